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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.func import functional_call

from gan_research.errors import ConfigError
from gan_research.families.base import AdversarialModule, DiscriminatorLoss, GeneratorLoss
from gan_research.networks.collapse import pack


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

    # The step's mode-collapse remedies (schedule.packing, unrolled_steps, feature_matching).
    packs_samples: ClassVar[bool] = True
    unrolls_discriminator: ClassVar[bool] = True
    matches_features: ClassVar[bool] = True

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
        # Packs are made before the label flips, so a flipped pair swaps whole packs and D never
        # sees a pack that mixes real and fake samples (PacGAN, sec. 3).
        (real, real_cond), (fake, fake_cond) = self.pack(real, real_cond), self.pack(fake, fake_cond)
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
        a relativistic loss, an unrolled D); returns its logs."""
        batch_size = real.shape[0]
        schedule = self.schedule
        with self.optimizer_phase(opt_g):
            fake_cond = self.sample_condition(batch_size)
            fake = self.generate_fake(self.sample_latent(batch_size), fake_cond)
            fake_in, fake_cond = self.pack(self.add_instance_noise(fake), fake_cond)
            real_cond = self.real_condition(labels) if labels is not None else None
            # What D is shown of the real batch (packed, with instance noise), made once on demand.
            real_in: list[tuple[Tensor, Any]] = []

            def real_input() -> tuple[Tensor, Any]:
                if not real_in:
                    with torch.no_grad():
                        real_in.append(self.pack(self.add_instance_noise(self.real_samples(real)), real_cond))
                return real_in[0]

            discriminate = self.discriminate
            if schedule.unrolled_steps > 0:
                discriminate = self.unrolled_discriminator(*real_input(), fake_in, fake_cond)
            fake_scores, fake_extra = discriminate(fake_in, fake_cond)
            real_scores = self.real_scores_for_generator(lambda: discriminate(*real_input())[0])
            terms: dict[str, Tensor] = {}
            if schedule.feature_matching > 0:
                terms["feature_matching"] = schedule.feature_matching * self.feature_matching_loss(
                    real_input()[0], fake_in
                )
            if not schedule.feature_matching_only:
                terms["adversarial"] = self.objective.adversarial.generator_loss(fake_scores, real_scores)
            extra = self.generator_extra_losses(fake, fake_extra, fake_cond)
            g_loss = sum([*terms.values(), *extra.losses.values()])
            # The adversarial term alone is G's loss, logged as before (no train/g_adversarial key).
            terms.pop("adversarial", None)
            return self.generator_update(opt_g, GeneratorLoss(g_loss, {**terms, **extra.losses}, extra.logs))

    # ---------------------------------------------------------- remedies
    def pack(self, samples: Tensor, condition: Any) -> tuple[Tensor, Any]:
        """``samples`` as D judges them: with ``schedule.packing`` = m > 1, consecutive groups of m
        samples concatenated along the channel axis (PacGAN, Lin et al. 2018, sec. 3), so D scores
        B / m packs. A conditioned batch cannot be packed (one condition per pack is undefined)."""
        m = self.schedule.packing
        if m == 1:
            return samples, condition
        if condition is not None:
            raise ConfigError(
                f"schedule.packing={m}: {type(self).__name__} conditions D on each sample, and a pack of "
                f"{m} samples has no single condition; expected schedule.packing=1"
            )
        return pack(samples, m), None

    def unrolled_discriminator(
        self, real_in: Tensor, real_cond: Any, fake_in: Tensor, fake_cond: Any
    ) -> Callable[[Tensor, Any], tuple[Tensor, Any]]:
        """:meth:`discriminate` with D's weights after ``schedule.unrolled_steps`` = k gradient steps
        on this step's real and fake inputs (Metz et al. 2017, arXiv:1611.02163, eq. 3:
        θ_D^{k+1} = θ_D^k − η ∇ L_D(θ_G, θ_D^k), with L_D the adversarial D loss; penalties and
        extra D terms are left out of the surrogate). The steps act on copies of D's parameters and
        buffers (``torch.func.functional_call``), so D's own weights, statistics and gradients are
        untouched. With ``unrolled_second_order`` the fake inputs keep their graph, so G's gradient
        includes how D's unrolled weights depend on G (eq. 12's second term)."""
        schedule = self.schedule
        lr = schedule.unrolled_lr if schedule.unrolled_lr is not None else schedule.lr_d
        second_order = schedule.unrolled_second_order
        scorer = _Discriminate(self)
        params = {
            f"discriminator.{n}": p.detach().requires_grad_(True)
            for n, p in self.discriminator.named_parameters()
        }
        # Copies, so batch-norm statistics or spectral-norm vectors updated by the unrolled forwards
        # do not leak into D.
        buffers = {f"discriminator.{n}": b.detach().clone() for n, b in self.discriminator.named_buffers()}
        fake_unrolled = fake_in if second_order else fake_in.detach()
        adversarial = self.objective.adversarial
        for _ in range(schedule.unrolled_steps):
            state = {**params, **buffers}
            real_scores = functional_call(scorer, state, (real_in, real_cond))[0]
            fake_scores = functional_call(scorer, state, (fake_unrolled, fake_cond))[0]
            loss = adversarial.discriminator_loss(
                real_scores, fake_scores, real_target=1.0 - schedule.label_smoothing
            )
            grads = torch.autograd.grad(loss, list(params.values()), create_graph=second_order)
            params = {name: p - lr * g for (name, p), g in zip(params.items(), grads, strict=True)}
            if not second_order:
                params = {name: p.detach().requires_grad_(True) for name, p in params.items()}
        state = {**params, **buffers}

        def discriminate(x: Tensor, condition: Any) -> tuple[Tensor, Any]:
            return functional_call(scorer, state, (x, condition))

        return discriminate


class _Discriminate(nn.Module):
    """A family's :meth:`GAN.discriminate` as a module whose only submodule is the family's D, so
    ``torch.func.functional_call`` can run it with other values for D's parameters."""

    def __init__(self, family: GAN) -> None:
        super().__init__()
        self.discriminator = family.discriminator
        # Not a submodule: functional_call must see D's tensors only.
        object.__setattr__(self, "family", family)

    def forward(self, x: Tensor, condition: Any) -> tuple[Tensor, Any]:
        return self.family.discriminate(x, condition)
