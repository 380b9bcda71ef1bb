"""GauGAN: semantic image synthesis with spatially-adaptive normalisation (Park et al. 2019,
"Semantic Image Synthesis with Spatially-Adaptive Normalization", arXiv:1903.07291).

G maps a semantic label map m (one-hot, one channel per class) to an image; every normalisation
layer of G is modulated per pixel by m (SPADE, ``networks/spade.py``), so the layout is not washed
out by normalisation as in pix2pix's encoder. D is a multi-scale PatchGAN on the (m, image) pair.
The objective (sec. 3 and 4, the reference's ``Pix2PixModel.compute_generator_loss``):

    L_G = L_hinge,G + λ_FM · L_FM + λ_VGG · L_VGG (+ λ_KL · L_KL in the multimodal variant)
    L_D = E[max(0, 1 − D(m, x))] + E[max(0, 1 + D(m, G(m)))]

with each hinge term averaged over D's scales, L_FM the discriminator feature-matching loss and
L_KL the encoder's KL term (``losses/feature_matching.py``), L_VGG the perceptual loss of the
``perceptual`` group (the reference: VGG19 relu1_1 … relu5_1, L1, weights 1/32 … 1). λ_FM = λ_VGG
= 10 and λ_KL = 0.05 as the paper; the adversarial loss is the ``loss`` group (``hinge``, as the
paper, in the GauGAN experiments). Without a perceptual network (``perceptual=none``) the VGG term
is off: the paper's ablation "w/o perceptual loss" (its Table 6 reports it still trains).

One training step follows the reference trainer (``trainers/pix2pix_trainer.py``): the G update
first, then the D update on a new synthesis without gradient (``generate_fake`` under
``torch.no_grad()``), with fake and real pairs scored by D in one batch (``discriminate``). With
``schedule.n_critic = k`` the batch is split in k parts: G updates on the first, D on every part
(the reference's ``D_steps_per_G``: one G update per k D updates).

Multimodal variant (``model.generator.use_vae=true``): G owns an image encoder; in training z is
drawn from q(z | real image) with the reparameterisation trick (in both phases, as the reference),
at inference from N(0, I); the grids then show several styles (fixed latents) of each layout.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from gan_research.errors import ConfigError
from gan_research.families.base import DiscriminatorLoss, GeneratorLoss
from gan_research.families.image_to_image import ImageToImageModule
from gan_research.losses.feature_matching import discriminator_feature_matching, gaussian_kl, reparameterize
from gan_research.losses.perceptual import PerceptualLoss, feature_network_or_none
from gan_research.networks.spade import final_logits
from gan_research.utils.validation import check_int_at_least
from gan_research.utils.weights import keep_out_of_checkpoints

#: The reference's VGG loss (``models/networks/loss.py``, ``VGGLoss``): L1 on these layers.
VGG_LAYER_WEIGHTS = {"relu1_1": 1 / 32, "relu2_1": 1 / 16, "relu3_1": 1 / 8, "relu4_1": 1 / 4, "relu5_1": 1.0}


class SPADE(ImageToImageModule):
    """GauGAN: G(m[, z]) → image with SPADE layers, D a multi-scale PatchGAN on (m, image).

    Args:
        generator: ``networks.spade.SPADEGenerator`` (or any label map → image network with
            ``input_shape``/``output_shape``; with ``use_vae`` it must also have ``encode``).
        discriminator: ``networks.spade.MultiscaleDiscriminator`` (per scale, a list of layer
            outputs ending with the logits) with ``input_shape`` (K + C, H, W).
        feature_matching_weight: λ_FM (10; 0 turns the term off).
        perceptual: the ``perceptual`` group's feature network, or none.
        perceptual_weight: λ_VGG (10).
        perceptual_layers: layer → weight of the perceptual term (default: the reference's VGG19
            weights when the network has those layers, else equal weights on its ``layers``).
        kl_weight: λ_KL of the multimodal variant (0.05).
        num_styles: styles per layout in the multimodal variant's grids (3).
        *args, **kwargs: those of :class:`~gan_research.families.image_to_image.ImageToImageModule`.
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        *args: Any,
        feature_matching_weight: float = 10.0,
        perceptual: Any = None,
        perceptual_weight: float = 10.0,
        perceptual_layers: dict[str, float] | None = None,
        kl_weight: float = 0.05,
        num_styles: int = 3,
        **kwargs: Any,
    ) -> None:
        # The multimodal variant takes a latent (the base registers its fixed grid latents).
        self.latent_input = bool(getattr(generator, "use_vae", False))
        super().__init__(generator, discriminator, *args, **kwargs)
        for key, value in (
            ("feature_matching_weight", feature_matching_weight),
            ("perceptual_weight", perceptual_weight),
            ("kl_weight", kl_weight),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"model.{key}={value!r} is invalid: expected a float >= 0")
        self.feature_matching_weight = float(feature_matching_weight)
        self.perceptual_weight = float(perceptual_weight)
        self.kl_weight = float(kl_weight)
        self.num_styles = check_int_at_least("model", "num_styles", num_styles, 1, form="override")
        if self.latent_input:
            # The grids' styles: fixed latents of their own (one per column), so any number of
            # styles shows whatever num_fixed_samples is; seeded apart from the base's fixed_noise.
            gen = torch.Generator().manual_seed(self.sample_seed + 1)
            self.register_buffer(
                "style_noise", torch.randn(self.num_styles, generator.latent_dim, generator=gen)
            )
        perceptual = feature_network_or_none(perceptual)
        self.perceptual: nn.Module | None = None
        self.feature_loss: PerceptualLoss | None = None
        if perceptual is not None and self.perceptual_weight > 0:
            layers = tuple(getattr(perceptual, "layers", ()))
            if perceptual_layers is None:
                vgg = set(VGG_LAYER_WEIGHTS) <= set(layers)
                weights = {k: v for k, v in VGG_LAYER_WEIGHTS.items()} if vgg else {k: 1.0 for k in layers}
            else:
                weights = {str(k): float(v) for k, v in dict(perceptual_layers).items()}
            # Frozen and fixed: its weights stay out of checkpoints (VGG19 would add 80 MB to each).
            self.perceptual = keep_out_of_checkpoints(perceptual)
            self.feature_loss = PerceptualLoss(perceptual, weights, criterion="l1")

    # ----------------------------------------------------------------- checks
    def check_networks(self, generator: nn.Module, discriminator: nn.Module) -> None:
        """G maps (K, H, W) label maps to (C, H, W) images; D sees the (K + C, H, W) pair."""
        super().check_networks(generator, discriminator)
        g_in, g_out, d_in = (
            tuple(s) for s in (generator.input_shape, generator.output_shape, discriminator.input_shape)
        )
        pair = g_in[0] + g_out[0]
        if d_in != (pair, *g_out[1:]):
            raise ConfigError(
                f"model.discriminator sees {d_in} but GauGAN's D judges the (label map, image) pair "
                f"concatenated: ({g_in[0]} + {g_out[0]}, {g_out[1]}, {g_out[2]}) = {(pair, *g_out[1:])}; "
                f"set model.discriminator.label_channels={g_in[0]}, "
                f"model.discriminator.image_channels={g_out[0]} and "
                f"model.discriminator.image_size={g_out[-1]}"
            )
        if self.latent_input and not callable(getattr(generator, "encode", None)):
            raise ConfigError("model.generator.use_vae needs a generator with an image encoder (encode)")

    # ------------------------------------------------------------------- step
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        chunks = self.critic_chunks(batch[0], batch[1])
        # The reference's order: the G update, then D on a new synthesis (no gradient to G).
        segmap, real = chunks[0]
        logs = self.generator_step(segmap, real, opt_g)
        for segmap, real in chunks:
            with torch.no_grad():
                fake = self.synthesize(segmap, real)[0]
            logs.update(self.discriminator_step(segmap, real, fake, opt_d))
        self.finish_step(logs, batch_size=segmap.shape[0])

    def synthesize(self, segmap: Tensor, real: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(G(m[, z]), KL term or None)``; in the multimodal variant z ~ q(z | real image)."""
        if not self.latent_input:
            return self.generator(segmap), None
        mu, logvar = self.generator.encode(real)
        return self.generator(segmap, reparameterize(mu, logvar)), gaussian_kl(mu, logvar)

    def discriminate(self, segmap: Tensor, fake: Tensor, real: Tensor) -> tuple[list, list]:
        """D's outputs for (m, fake) and (m, real), scored in one batch as the reference (its
        batch-norm option then sees both in the same statistics); each per scale, per layer."""
        pairs = torch.cat([torch.cat([segmap, fake], 1), torch.cat([segmap, real], 1)], 0)
        outputs = self.discriminator(self.add_instance_noise(pairs))
        n = fake.shape[0]
        fake_out = [[t[:n] for t in layers] for layers in outputs]
        real_out = [[t[n:] for t in layers] for layers in outputs]
        return fake_out, real_out

    def discriminator_step(self, segmap: Tensor, real: Tensor, fake: Tensor, opt_d: Any) -> dict[str, Tensor]:
        """One D update: the hinge (``loss`` group) per scale, averaged over the scales."""
        real, fake = self.flip_labels(real, fake)  # a flipped pair keeps its label map
        adversarial = self.objective.adversarial
        with self.optimizer_phase(opt_d):
            fake_out, real_out = self.discriminate(segmap, fake, real)
            d_adv = sum(
                adversarial.discriminator_loss(r[-1], f[-1], real_target=1.0 - self.schedule.label_smoothing)
                for f, r in zip(fake_out, real_out, strict=True)
            ) / len(fake_out)
            penalties = self.discriminator_regularization(
                lambda x: final_logits(self.discriminator(torch.cat([segmap, x], 1))), real, fake
            )
            d_loss = d_adv + sum(penalties.values()) if penalties else d_adv
            return self.discriminator_update(
                opt_d,
                DiscriminatorLoss(d_loss, d_adv, final_logits(real_out), final_logits(fake_out), penalties),
            )

    def generator_loss(self, segmap: Tensor, real: Tensor) -> GeneratorLoss:
        """L_G of the module docstring, with each weighted term logged unweighted."""
        fake, kl = self.synthesize(segmap, real)
        fake_out, real_out = self.discriminate(segmap, fake, real)
        adversarial = self.objective.adversarial
        # real_out is D's forward on the real pair, already made for feature matching; a
        # relativistic loss reads its final logits, detached (they do not depend on G).
        real_final = [r[-1].detach() if adversarial.relativistic else None for r in real_out]
        g_adv = sum(
            adversarial.generator_loss(f[-1], r) for f, r in zip(fake_out, real_final, strict=True)
        ) / len(fake_out)
        loss, terms = g_adv, {"adv": g_adv}
        if self.feature_matching_weight > 0:
            fm = discriminator_feature_matching(fake_out, real_out)
            loss, terms["feature_matching"] = loss + self.feature_matching_weight * fm, fm
        if self.feature_loss is not None:
            perceptual = self.feature_loss(fake, real)
            loss, terms["perceptual"] = loss + self.perceptual_weight * perceptual, perceptual
        if kl is not None:
            loss, terms["kl"] = loss + self.kl_weight * kl, kl
        return GeneratorLoss(loss, terms)

    def generator_step(self, segmap: Tensor, real: Tensor, opt_g: Any) -> dict[str, Tensor]:
        """One G update (and of the encoder, G's own module); D is frozen by the optimiser toggle."""
        with self.optimizer_phase(opt_g):
            return self.generator_update(opt_g, self.generator_loss(segmap, real))

    # ------------------------------------------------------------------- grids
    def grid_columns(self, a: Tensor, b: Tensor) -> list[Tensor]:
        """Label map | synthesised | real (the grid shows the one-hot map in colour,
        ``utils.images.displayable``); the multimodal variant shows ``num_styles`` syntheses per
        layout, each column one fixed latent (the same style down the column)."""
        if not self.latent_input:
            return [a, self.translate(a).cpu(), b]
        columns = [self.translate(a, z.expand(a.shape[0], -1)).cpu() for z in self.style_noise]
        return [a, *columns, b]
