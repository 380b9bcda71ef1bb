"""The unconditional GAN family (Goodfellow et al. 2014; DCGAN, WGAN, WGAN-GP,
LSGAN, hinge: the network and the loss come from config).

Per training step: ``n_critic`` D updates, each on its own real batch and a
detached fake batch, then one G update. Each phase runs toggle → zero_grad →
manual_backward → step → untoggle (Lightning's manual-optimisation GAN order).
"""

from __future__ import annotations

import torch
from torch import Tensor

from gan_research.families.base import AdversarialModule


class GAN(AdversarialModule):
    """Unconditional GAN: G(z) → sample, D(x) → score."""

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        real_all = batch[0]
        opt_g, opt_d = self.optimizers()
        n_critic = self.schedule.n_critic
        if real_all.shape[0] % n_critic != 0:
            raise RuntimeError(
                f"a training batch of {real_all.shape[0]} samples cannot be split into "
                f"n_critic={n_critic} D batches; the datamodule must yield batch_size * n_critic samples"
            )
        logs: dict[str, Tensor] = {}
        for real in real_all.chunk(n_critic):
            logs.update(self.discriminator_step(real, opt_d))
        logs.update(self.generator_step(real_all.shape[0] // n_critic, opt_g))
        if "train/d_grad_norm" in logs:
            # >> 1: G is pushed much harder than D learns (D dominating); << 1: the reverse.
            logs["train/grad_norm_ratio"] = logs["train/g_grad_norm"] / logs["train/d_grad_norm"].clamp_min(
                1e-12
            )
        self.update_ema()
        self.step_lr_schedulers()
        logs["train/lr_g"] = torch.tensor(opt_g.param_groups[0]["lr"])
        logs["train/lr_d"] = torch.tensor(opt_d.param_groups[0]["lr"])
        if self.schedule.instance_noise > 0:
            logs["train/instance_noise"] = torch.tensor(self.instance_noise_std())
        self.log_step(logs, batch_size=real_all.shape[0] // n_critic)

    def discriminator_step(self, real: Tensor, opt_d) -> dict[str, Tensor]:
        with torch.no_grad():
            fake = self.generator(self.sample_latent(real.shape[0]))
        real_in, fake_in = self.flip_labels(real, fake)
        real_in, fake_in = self.add_instance_noise(real_in), self.add_instance_noise(fake_in)
        adversarial = self.objective.adversarial
        with self.optimizer_phase(opt_d):
            real_scores = self.discriminator(real_in)
            fake_scores = self.discriminator(fake_in)
            d_adv = adversarial.discriminator_loss(
                real_scores, fake_scores, real_target=1.0 - self.schedule.label_smoothing
            )
            penalties = self.discriminator_regularization(self.discriminator, real_in, fake_in)
            d_loss = d_adv + sum(penalties.values()) if penalties else d_adv
            threshold = self.schedule.d_skip_threshold
            # The .item() host sync happens only when skipping is configured; under DDP the
            # decision is taken on the mean loss, so every process skips (or not) together.
            skip = threshold is not None and self.all_gather(d_adv.detach()).mean().item() < threshold
            if not skip:
                d_grad_norm = self.backward_and_step(opt_d, d_loss, counts_as_step=False)
                self.clip_discriminator_weights()
                self.count_d_update()
        logs = {
            "train/d_loss": d_loss.detach(),
            **{f"train/d_{name}": value.detach() for name, value in penalties.items()},
            **self.balance_diagnostics(real_scores.detach(), fake_scores.detach(), d_adv.detach()),
        }
        if not skip:
            logs["train/d_grad_norm"] = d_grad_norm
        if threshold is not None:
            logs["train/d_skipped"] = torch.tensor(float(skip))
        return logs

    def generator_step(self, batch_size: int, opt_g) -> dict[str, Tensor]:
        with self.optimizer_phase(opt_g):
            fake = self.generator(self.sample_latent(batch_size))
            fake_scores = self.discriminator(self.add_instance_noise(fake))
            g_loss = self.objective.adversarial.generator_loss(fake_scores)
            g_grad_norm = self.backward_and_step(opt_g, g_loss, counts_as_step=True)
        return {"train/g_loss": g_loss.detach(), "train/g_grad_norm": g_grad_norm}
