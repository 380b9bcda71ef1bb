"""The unconditional GAN family (Goodfellow et al. 2014; DCGAN, WGAN, WGAN-GP,
LSGAN, hinge: the network and the loss come from config), and the training step
the other families reuse.

Per training step: ``n_critic`` D updates, each on its own real batch and a
detached fake batch, then one G update. Each phase runs toggle → zero_grad →
manual_backward → step → untoggle (Lightning's manual-optimisation GAN order).

A family that conditions the networks or adds heads to D (cGAN, AC-GAN,
InfoGAN, the semi-supervised GAN, ProGAN, StyleGAN) subclasses :class:`GAN` and
overrides the hooks below, so every trick of the step (label flips, instance noise,
lazy regularisers, skipped D updates, weight clipping, EMA, diagnostics) applies to
it unchanged. Each hook returns what it computes:

- :meth:`sample_condition` / :meth:`real_condition`: what a fake / real batch is
  conditioned on (class labels, latent codes; None when unconditional);
- :meth:`generate_fake`: G's forward pass;
- :meth:`real_samples`: what D judges of a real batch (the batch itself; MSG-GAN: the
  batch's image pyramid, in the form :meth:`generate_fake` gives its fakes);
- :meth:`discriminate`: D's forward pass, returning the adversarial scores and
  whatever else D outputs (class logits, Q head);
- :meth:`discriminator_extra_losses` / :meth:`generator_extra_losses`: a :class:`LossTerms`,
  the weighted terms added to each network's loss (the auxiliary classifier, mutual
  information, a path-length penalty) and the diagnostics that go with them.

The end of each update and of the step is the base's (:meth:`~AdversarialModule.discriminator_update`,
:meth:`~AdversarialModule.generator_update`, :meth:`~AdversarialModule.finish_step`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from gan_research.families.base import AdversarialModule, DiscriminatorLoss, GeneratorLoss


@dataclass(frozen=True)
class LossTerms:
    """What an extra-loss hook returns.

    Args:
        losses: weighted terms added to the network's loss, logged as ``train/d_<name>`` /
            ``train/g_<name>``.
        logs: diagnostics computed with them (not added to the loss), logged under their own keys.
    """

    losses: dict[str, Tensor] = field(default_factory=dict)
    logs: dict[str, Tensor] = field(default_factory=dict)


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

    def real_samples(self, real: Tensor) -> Tensor:
        """What D judges of a real batch, in the form :meth:`generate_fake` returns fakes (so label
        flips, instance noise and gradient penalties mix the two elementwise)."""
        return real

    def discriminate(self, x: Tensor, condition: Any) -> tuple[Tensor, Any]:
        """(scores of shape (B,), extra outputs of D or None)."""
        return self.discriminator(x), None

    def discriminator_extra_losses(
        self, real_extra: Any, fake_extra: Any, real_condition: Any, fake_condition: Any
    ) -> LossTerms:
        """Terms added to D's loss, from D's extra outputs on the real and fake batch."""
        return LossTerms()

    def generator_extra_losses(self, fake: Tensor, fake_extra: Any, fake_condition: Any) -> LossTerms:
        """Terms added to G's loss, from the fake batch ``fake`` and D's extra outputs on it."""
        return LossTerms()

    # ------------------------------------------------------------------- step
    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        logs, batch_size = self.adversarial_updates(batch)
        self.finish_step(logs, batch_size)

    def adversarial_updates(self, batch: tuple[Tensor, ...]) -> tuple[dict[str, Tensor], int]:
        """``n_critic`` D updates, each on its share of the batch, then one G update; returns
        the updates' logs and the D batch size."""
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
        # The G update is given the last D update's real batch: feature matching reads it.
        logs.update(self.generator_step(real, opt_g, labels))
        return logs, real.shape[0]

    def discriminator_step(self, real: Tensor, opt_d: Any, labels: Tensor | None = None) -> dict[str, Tensor]:
        """One D update on ``real`` against a fresh fake batch of its size; returns its logs."""
        real_cond = self.real_condition(labels) if labels is not None else None
        fake_cond = self.sample_condition(real.shape[0])
        real = self.real_samples(real)
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
            terms = {**penalties, **extra.losses}
            d_loss = d_adv + sum(terms.values()) if terms else d_adv
            return self.discriminator_update(
                opt_d, DiscriminatorLoss(d_loss, d_adv, real_scores, fake_scores, terms, extra.logs)
            )

    def generator_step(self, real: Tensor, opt_g: Any, labels: Tensor | None = None) -> dict[str, Tensor]:
        """One G update on a fresh fake batch of ``real``'s size (``real``, ``labels``: the last D
        update's real batch, read only where G's loss compares with real data: feature matching,
        a relativistic loss); returns its logs."""
        batch_size = real.shape[0]
        with self.optimizer_phase(opt_g):
            fake_cond = self.sample_condition(batch_size)
            fake = self.generate_fake(self.sample_latent(batch_size), fake_cond)
            fake_scores, fake_extra = self.discriminate(self.add_instance_noise(fake), fake_cond)
            real_scores = self.real_scores_for_generator(
                lambda: self.discriminate(
                    self.add_instance_noise(self.real_samples(real)),
                    self.real_condition(labels) if labels is not None else None,
                )[0]
            )
            g_adv = self.objective.adversarial.generator_loss(fake_scores, real_scores)
            extra = self.generator_extra_losses(fake, fake_extra, fake_cond)
            g_loss = g_adv + sum(extra.losses.values()) if extra.losses else g_adv
            return self.generator_update(opt_g, GeneratorLoss(g_loss, extra.losses, extra.logs))
