"""pix2pix: image-to-image translation with a conditional GAN (Isola et al. 2017,
"Image-to-Image Translation with Conditional Adversarial Networks", arXiv:1611.07004).

G maps an input image a (domain A) to an output image b (domain B); D is a conditional
PatchGAN that scores the (input, output) pair, concatenated along the channels
(sec. 2.1: "both the generator and discriminator observe the input edge map").
The objective is the paper's eq. 4,

    G* = arg min_G max_D L_cGAN(G, D) + λ L_L1(G),   L_L1(G) = E ||b - G(a)||_1,

with λ = ``l1_weight`` (100 in the paper). There is no latent z: the noise is dropout in
G's decoder at training time (sec. 2.1).

One training step follows the released code's ``Pix2PixModel.optimize_parameters``
(junyanz/pytorch-CycleGAN-and-pix2pix, models/pix2pix_model.py): one forward of G,
then a D update on the detached output, then a G update through the updated D,
reusing the same forward (same dropout mask). Details of that code kept here:

- D's loss is halved, ``loss_D = (loss_D_fake + loss_D_real) * 0.5`` ("we divide the
  objective by 2 while optimizing D, which slows down the rate at which D learns
  relative to G", sec. 3.3): ``d_loss_weight`` (0.5).
- The adversarial loss is the ``loss`` config group. ``non_saturating`` (the default
  recipe) is the reference's ``gan_mode="vanilla"``: BCE-with-logits on every patch,
  G maximising log D(a, G(a)). With ``lsgan`` our loss keeps Mao et al.'s ½ factors
  (``losses/adversarial.py``), so against L1 the adversarial term weighs half of the
  reference's ``gan_mode="lsgan"`` (D's likewise); set ``l1_weight=50`` to restore
  the reference's ratio.
- L1 is the mean absolute error per pixel (``nn.L1Loss()``), in [-1, 1] image units.

The schedule's D-side tricks apply unchanged (label smoothing and flips, instance
noise on D's input pair, lazy gradient penalties on the pair, weight clipping, skipped
D updates, EMA of G, linear LR decay). With ``schedule.n_critic > 1`` the step's batch
is split in n_critic parts: D updates on each (outputs of G without gradient), the G
update on the last part; n_critic = 1 is the reference's step.

Inference (``translate``, sample grids, metrics: the image-to-image base,
:class:`~gan_research.families.image_to_image.ImageToImageModule`) runs G in eval mode: dropout
off, batch norm with running statistics. The paper instead keeps dropout on and uses
the test batch's statistics at test time (sec. 2.2); at the reference's batch size of
1 that is instance normalisation.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_research.errors import ConfigError
from gan_research.families.base import DiscriminatorLoss, GeneratorLoss
from gan_research.families.image_to_image import ImageToImageModule


class Pix2Pix(ImageToImageModule):
    """pix2pix: G(a) → b with an L1 term, D(a, b) a conditional PatchGAN.

    Args:
        generator: A → B image network with ``input_shape`` (C_a, H, W) and
            ``output_shape`` (C_b, H, W) (``networks/unet.py``).
        discriminator: pair scorer with ``input_shape`` (C_a + C_b, H, W) returning
            patch logits (``networks/patchgan.py``).
        l1_weight: λ of eq. 4 (100).
        d_loss_weight: factor of D's loss (0.5, the reference's halving).
        num_fixed_samples: validation pairs in the sample grid (input | output | target rows).
        *args, **kwargs: those of :class:`~gan_research.families.image_to_image.ImageToImageModule`.
    """

    def __init__(
        self, *args: Any, l1_weight: float = 100.0, d_loss_weight: float = 0.5, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        for key, value in (("l1_weight", l1_weight), ("d_loss_weight", d_loss_weight)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"model.{key}={value!r} is invalid: expected a float >= 0")
        if d_loss_weight == 0:
            raise ConfigError("model.d_loss_weight=0 would never train D: expected a float > 0 (0.5)")
        self.l1_weight = float(l1_weight)
        self.d_loss_weight = float(d_loss_weight)

    # ----------------------------------------------------------------- checks
    def check_networks(self, generator: nn.Module, discriminator: nn.Module) -> None:
        """G maps (C_a, H, W) to (C_b, H, W); D scores (C_a + C_b, H, W) pairs."""
        super().check_networks(generator, discriminator)
        g_in, g_out, d_in = (
            tuple(s) for s in (generator.input_shape, generator.output_shape, discriminator.input_shape)
        )
        if len(g_in) != 3 or len(g_out) != 3 or len(d_in) != 3:
            raise ConfigError(
                f"pix2pix needs image networks; got generator {g_in} -> {g_out}, discriminator {d_in}"
            )
        if g_in[1:] != g_out[1:]:
            raise ConfigError(
                f"model.generator maps {g_in} to {g_out}: pix2pix translates between images of one size"
            )
        pair = g_in[0] + g_out[0]
        if d_in[0] != pair:
            raise ConfigError(
                f"model.discriminator.input_channels={d_in[0]}, but pix2pix's D sees the (input, output) "
                f"pair concatenated: C_a + C_b = {g_in[0]} + {g_out[0]} = {pair}; set "
                f"model.discriminator.input_channels={pair}"
            )
        if d_in[1:] != g_out[1:]:
            raise ConfigError(
                f"model.discriminator.image_size gives {d_in[1:]} inputs but model.generator produces "
                f"{g_out[1:]} images; set model.discriminator.image_size={g_out[-1]}"
            )

    def check_data(self, datamodule: Any) -> None:
        """A paired dataset whose A and B shapes are G's input and output shapes."""
        spec = datamodule.spec
        self.check_data_kind(spec)
        name = spec.name
        g_in, g_out = tuple(self.generator.input_shape), tuple(self.generator.output_shape)
        a_shape, b_shape = tuple(spec.a_shape), tuple(spec.sample_shape)
        problems = []
        if a_shape[0] != g_in[0]:
            problems.append(f"model.generator.input_channels={a_shape[0]} (dataset channels_a)")
        if b_shape[0] != g_out[0]:
            problems.append(f"model.generator.output_channels={b_shape[0]} (dataset channels_b)")
        if a_shape[1:] != g_in[1:] or b_shape[1:] != g_out[1:]:
            size = b_shape[-1]
            problems.append(f"model.generator.image_size={size} and model.discriminator.image_size={size}")
        if problems:
            pair = a_shape[0] + b_shape[0]
            d_hint = (
                f" and model.discriminator.input_channels={pair}"
                if pair != self.discriminator.input_shape[0]
                else ""
            )
            raise ConfigError(
                f"dataset '{name}' has pairs of shapes {a_shape} -> {b_shape}, but model.generator maps "
                f"{g_in} -> {g_out}; set {', '.join(problems)}{d_hint}"
            )

    # ------------------------------------------------------------------- step
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        a_all, b_all = batch[0], batch[1]
        opt_g, opt_d = self.optimizers()
        chunks = self.critic_chunks(a_all, b_all)
        logs: dict[str, Tensor] = {}
        for a, b in chunks[:-1]:
            with torch.no_grad():
                fake = self.generator(a)
            logs.update(self.discriminator_step(a, b, fake, opt_d))
        a, b = chunks[-1]
        # One forward for both phases, as the reference: D learns from its detached output,
        # then G is scored by the updated D on the very same output (same dropout mask).
        fake = self.generator(a)
        logs.update(self.discriminator_step(a, b, fake.detach(), opt_d))
        logs.update(self.generator_step(a, b, fake, opt_g))
        self.finish_step(logs, batch_size=a.shape[0])

    def noisy_pair(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        """The pair (a, b) as D sees it in training: instance noise on the pair, drawn for the two
        images together (``schedule.instance_noise``)."""
        pair = self.add_instance_noise(torch.cat([a, b], dim=1))
        return pair[:, : a.shape[1]], pair[:, a.shape[1] :]

    def discriminate(self, a: Tensor, b: Tensor) -> Tensor:
        """D's patch logits of the pair (a, b), concatenated along the channels as the reference's
        ``torch.cat((real_A, fake_B), 1)``."""
        return self.discriminator(torch.cat([a, b], dim=1))

    def discriminator_step(self, a: Tensor, b: Tensor, fake: Tensor, opt_d: Any) -> dict[str, Tensor]:
        """One D update on real pairs (a, b) and fake pairs (a, G(a)); ``fake`` carries no gradient."""
        real_b, fake_b = self.flip_labels(b, fake)  # a flipped pair keeps its input a
        real_a, real_b = self.noisy_pair(a, real_b)
        fake_a, fake_b = self.noisy_pair(a, fake_b)
        with self.optimizer_phase(opt_d):
            real_scores = self.discriminate(real_a, real_b)
            fake_scores = self.discriminate(fake_a, fake_b)
            d_adv = self.objective.adversarial.discriminator_loss(
                real_scores, fake_scores, real_target=1.0 - self.schedule.label_smoothing
            )
            # Gradient penalties are taken w.r.t. the B half of the pair, given the real pair's
            # input (as GAN's conditional penalties are given the real batch's condition);
            # they keep their configured weights (the halving is the adversarial term's).
            penalties = self.discriminator_regularization(
                lambda x: self.discriminate(real_a, x), real_b, fake_b
            )
            d_loss = self.d_loss_weight * d_adv
            if penalties:
                d_loss = d_loss + sum(penalties.values())
            return self.discriminator_update(
                opt_d, DiscriminatorLoss(d_loss, d_adv, real_scores, fake_scores, penalties)
            )

    def generator_loss(self, a: Tensor, b: Tensor, fake: Tensor) -> dict[str, Tensor]:
        """Eq. 4's G side: ``{"g_loss": adv + l1_weight * l1, "g_adv": adv, "g_l1": l1}``
        (l1 unweighted: the mean absolute error per pixel)."""
        scores = self.discriminate(*self.noisy_pair(a, fake))
        real_scores = self.real_scores_for_generator(lambda: self.discriminate(*self.noisy_pair(a, b)))
        g_adv = self.objective.adversarial.generator_loss(scores, real_scores)
        g_l1 = F.l1_loss(fake, b)
        return {"g_loss": g_adv + self.l1_weight * g_l1, "g_adv": g_adv, "g_l1": g_l1}

    def generator_step(self, a: Tensor, b: Tensor, fake: Tensor, opt_g: Any) -> dict[str, Tensor]:
        """One G update; D is frozen by the optimiser toggle, so only G's weights change."""
        with self.optimizer_phase(opt_g):
            terms = self.generator_loss(a, b, fake)
            return self.generator_update(
                opt_g, GeneratorLoss(terms["g_loss"], {"adv": terms["g_adv"], "l1": terms["g_l1"]})
            )
