"""The unconditional GAN family (Goodfellow et al. 2014; DCGAN, WGAN, WGAN-GP,
LSGAN, hinge: the network and the loss come from config), and the training step
the other families reuse.

Per training step: ``n_critic`` D updates, each on its own real batch and a
detached fake batch, then one G update. Each phase runs toggle → zero_grad →
manual_backward → step → untoggle (Lightning's manual-optimisation GAN order).

A family that conditions the networks or adds heads to D (cGAN, AC-GAN,
InfoGAN, the semi-supervised GAN) subclasses :class:`GAN` and overrides the
hooks below, so every trick of the step (label flips, instance noise, lazy
regularisers, skipped D updates, weight clipping, EMA, diagnostics) applies to
it unchanged:

- :meth:`sample_condition` / :meth:`real_condition`: what a fake / real batch is
  conditioned on (class labels, latent codes; None when unconditional);
- :meth:`generate_fake`: G's forward pass;
- :meth:`discriminate`: D's forward pass, returning the adversarial scores and
  whatever else D outputs (class logits, Q head);
- :meth:`discriminator_extra_losses` / :meth:`generator_extra_losses`: weighted
  terms added to each network's loss (the auxiliary classifier, mutual information).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from gan_research.families.base import AdversarialModule


class GAN(AdversarialModule):
    """Unconditional GAN: G(z) → sample, D(x) → score."""

    # ------------------------------------------------------------------ hooks
    def sample_condition(self, n: int) -> Any:
        """Conditioning of a fake batch of ``n`` (labels, codes); None: unconditional."""
        return None

    def real_condition(self, labels: Tensor) -> Any:
        """Conditioning of a real batch with these dataset labels; None: D sees images only."""
        return None

    def generate_fake(self, z: Tensor, condition: Any) -> Tensor:
        return self.generator(z)

    def discriminate(self, x: Tensor, condition: Any) -> tuple[Tensor, Any]:
        """(scores of shape (B,), extra outputs of D or None)."""
        return self.discriminator(x), None

    def discriminator_extra_losses(
        self, real_extra: Any, fake_extra: Any, real_condition: Any, fake_condition: Any
    ) -> dict[str, Tensor]:
        """Weighted terms added to D's loss (logged as ``train/d_<name>``)."""
        return {}

    def generator_extra_losses(self, fake_extra: Any, fake_condition: Any) -> dict[str, Tensor]:
        """Weighted terms added to G's loss (logged as ``train/g_<name>``)."""
        return {}

    # ------------------------------------------------------------------- step
    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        real_all = batch[0]
        labels_all = batch[1] if len(batch) > 1 else None
        opt_g, opt_d = self.optimizers()
        n_critic = self.schedule.n_critic
        if real_all.shape[0] % n_critic != 0:
            raise RuntimeError(
                f"a training batch of {real_all.shape[0]} samples cannot be split into "
                f"n_critic={n_critic} D batches; the datamodule must yield batch_size * n_critic samples"
            )
        logs: dict[str, Tensor] = {}
        label_chunks = labels_all.chunk(n_critic) if labels_all is not None else [None] * n_critic
        for real, labels in zip(real_all.chunk(n_critic), label_chunks, strict=True):
            logs.update(self.discriminator_step(real, opt_d, labels))
        logs.update(self.generator_step(real_all.shape[0] // n_critic, opt_g))
        if "train/d_grad_norm" in logs:
            # >> 1: G is pushed much harder than D learns (D dominating); << 1: the reverse.
            logs["train/grad_norm_ratio"] = logs["train/g_grad_norm"] / logs["train/d_grad_norm"].clamp_min(
                1e-12
            )
        self.update_ema()
        self.step_lr_schedulers()
        # Host tensors: logging them needs no device copy, and only happens on logging steps.
        logs["train/lr_g"] = torch.tensor(opt_g.param_groups[0]["lr"])
        logs["train/lr_d"] = torch.tensor(opt_d.param_groups[0]["lr"])
        if self.schedule.instance_noise > 0:
            logs["train/instance_noise"] = torch.tensor(self.instance_noise_std())
        self.log_step(logs, batch_size=real_all.shape[0] // n_critic)

    def discriminator_step(self, real: Tensor, opt_d: Any, labels: Tensor | None = None) -> dict[str, Tensor]:
        real_cond = self.real_condition(labels) if labels is not None else None
        fake_cond = self.sample_condition(real.shape[0])
        with torch.no_grad():
            fake = self.generate_fake(self.sample_latent(real.shape[0]), fake_cond)
        (real_in, real_cond), (fake_in, fake_cond) = self.flip_pairs((real, real_cond), (fake, fake_cond))
        real_in, fake_in = self.add_instance_noise(real_in), self.add_instance_noise(fake_in)
        adversarial = self.objective.adversarial
        with self.optimizer_phase(opt_d):
            real_scores, real_extra = self.discriminate(real_in, real_cond)
            fake_scores, fake_extra = self.discriminate(fake_in, fake_cond)
            d_adv = adversarial.discriminator_loss(
                real_scores, fake_scores, real_target=1.0 - self.schedule.label_smoothing
            )
            # Gradient penalties are taken with the real batch's conditioning (StudioGAN's choice
            # for conditional D): interpolates and real samples are scored as that class.
            penalties = self.discriminator_regularization(
                lambda x: self.discriminate(x, real_cond)[0], real_in, fake_in
            )
            extra = self.discriminator_extra_losses(real_extra, fake_extra, real_cond, fake_cond)
            terms = {**penalties, **extra}
            d_loss = d_adv + sum(terms.values()) if terms else d_adv
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
            **{f"train/d_{name}": value.detach() for name, value in terms.items()},
            **self.balance_diagnostics(real_scores.detach(), fake_scores.detach(), d_adv.detach()),
        }
        if not skip:
            logs["train/d_grad_norm"] = d_grad_norm
        if threshold is not None:
            logs["train/d_skipped"] = torch.tensor(float(skip))
        return logs

    def generator_step(self, batch_size: int, opt_g: Any) -> dict[str, Tensor]:
        with self.optimizer_phase(opt_g):
            fake_cond = self.sample_condition(batch_size)
            fake = self.generate_fake(self.sample_latent(batch_size), fake_cond)
            fake_scores, fake_extra = self.discriminate(self.add_instance_noise(fake), fake_cond)
            g_adv = self.objective.adversarial.generator_loss(fake_scores)
            extra = self.generator_extra_losses(fake_extra, fake_cond)
            g_loss = g_adv + sum(extra.values()) if extra else g_adv
            g_grad_norm = self.backward_and_step(opt_g, g_loss, counts_as_step=True)
        logs = {"train/g_loss": g_loss.detach(), "train/g_grad_norm": g_grad_norm}
        logs.update({f"train/g_{name}": value.detach() for name, value in extra.items()})
        return logs
