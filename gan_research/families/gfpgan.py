"""GFP-GAN: blind restoration with a generative prior (Wang et al. 2021, "Towards Real-World Blind
Face Restoration with Generative Facial Prior", arXiv:2101.04061).

G (``networks/gfpgan.py``) maps a degraded image x to a restored ŷ: a degradation-removal U-Net
gives a latent code (W+) and multi-resolution spatial features; a pretrained StyleGAN2 synthesis
network (the generative prior, a checkpoint of this framework's ``model=stylegan2``, frozen or
fine-tuned) is driven by that code, its features modulated by Channel-Split SFT layers. D judges
restored against clean images (the reference: a StyleGAN2 discriminator, trained from scratch).

The objective (Sec. 3.4, eq. 5-8; the reference's ``GFPGANModel.optimize_parameters``,
``gfpgan/models/gfpgan_model.py``, with ``options/train_gfpgan_v1.yml``'s weights)::

    L_G = λ_l1 · L1(ŷ, y)                       pixel_weight       0.1
        + λ_pyr · Σ_r L1(rgb_r, y↓r)              pyramid_weight     1    (the first pyramid_steps)
        + λ_per · Σ_l w_l · L1(φ_l(ŷ), φ_l(y))    perceptual_weight  1    (eq. 5, "L_rec")
        + λ_sty · Σ_l w_l · L1(Gram φ_l(ŷ), Gram φ_l(y))   style_weight 50
        + λ_adv · softplus(-D(ŷ))                adversarial_weight 0.1  (eq. 6, loss group)
        + λ_id · L1(η(ŷ), η(y))                   identity_weight    10   (eq. 8)
    L_D = softplus(-D(y)) + softplus(D(ŷ)) (+ lazy R1, the loss group's regulariser)

- the pyramid (the reference's "image pyramid loss", removed after 50k iterations): the U-Net
  decoder's RGB output at each resolution r against y downsampled by successive bilinear halvings
  (``construct_img_pyramid``);
- φ: the ``perceptual`` group's network. With VGG19 the reference's layers and weights (before
  ReLU: conv1_2 0.1, conv2_2 0.1, conv3_4 1, conv4_4 1, conv5_4 1); otherwise equal weights on
  the network's spatial layers (the style term needs feature maps);
- η: the identity network (the reference: ArcFace on grey 128 px faces). Here any feature
  network of the perceptual interface, by default the dataset's domain classifier's penultimate
  features (``model.identity``), which makes the term class-preserving on digits;
- the facial-component losses (eq. 7: local discriminators on the eyes and mouth, Gram-matrix
  style losses on their features) need per-image component regions, which no dataset of this
  framework supplies (FFHQ's landmark file is not part of it): they are not implemented, and the
  README of the family's experiment says so.

One step follows the reference's order: the G update, then the D update on the same restoration
(detached). With ``schedule.n_critic = k`` the batch is split in k parts: G and D update on the
first, D alone on the others (on fresh restorations without gradient).

Evaluation restores with the prior's noise inputs fixed (``noise_mode="const"``), so the scores
of a checkpoint are the same every time; training draws them (``"random"``, the reference's
``randomize_noise=True``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_research.errors import ConfigError
from gan_research.families.base import GeneratorLoss
from gan_research.families.image_to_image import ImageToImageModule
from gan_research.losses.perceptual import feature_network_or_none, gram_matrix
from gan_research.utils.weights import keep_out_of_checkpoints

#: The reference's perceptual layers and weights on VGG19 (``perceptual_opt.layer_weights``).
VGG_LAYER_WEIGHTS = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}


def image_pyramid(images: Tensor, sizes: list[int]) -> list[Tensor]:
    """``images`` at each of ``sizes`` (ascending, the last its own size) by successive bilinear
    halvings, as the reference's ``construct_img_pyramid`` (half-pixel centres, no antialiasing)."""
    if int(images.shape[-1]) != sizes[-1]:
        raise ValueError(
            f"image_pyramid: the last size must be the images' own ({images.shape[-1]}), got {sizes}"
        )
    levels = [images]
    for size in reversed(sizes[:-1]):
        down = F.interpolate(levels[0], scale_factor=0.5, mode="bilinear", align_corners=False)
        if down.shape[-1] != size:
            raise ValueError(f"image_pyramid: sizes must halve, got {sizes}")
        levels.insert(0, down)
    return levels


def _weight(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"model.{key}={value!r} is invalid: expected a float >= 0")
    return float(value)


class GFPGAN(ImageToImageModule):
    """GFP-GAN: G(degraded) → restored with a StyleGAN2 prior; D judges restored against clean.

    Args:
        generator: ``networks.gfpgan.GFPGANGenerator`` (``forward(x, return_pyramid=True)``
            gives the image and the U-Net's RGB pyramid; ``noise_mode``).
        discriminator: any D of B images with ``input_shape`` (the reference's StyleGAN2 D).
        pixel_weight, pyramid_weight, perceptual_weight, style_weight, adversarial_weight,
            identity_weight: the λ of the module docstring (0 turns a term off).
        pyramid_steps: the pyramid loss applies while ``global_step < pyramid_steps`` (the
            reference's ``remove_pyramid_loss``: 50000).
        perceptual: the ``perceptual`` group's network (φ), or none.
        perceptual_layers: layer → weight (default: the reference's VGG19 weights when the network
            has those layers, else 1 on each of its spatial layers).
        identity: the identity network η (a feature network with ``layers``), or None.
        identity_layer: the layer of η compared (the domain classifier's ``features``).
        *args, **kwargs: those of :class:`~gan_research.families.image_to_image.ImageToImageModule`.
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        *args: Any,
        pixel_weight: float = 0.1,
        pyramid_weight: float = 1.0,
        pyramid_steps: int = 50_000,
        perceptual: Any = None,
        perceptual_weight: float = 1.0,
        style_weight: float = 50.0,
        perceptual_layers: dict[str, float] | None = None,
        adversarial_weight: float = 0.1,
        identity: Any = None,
        identity_layer: str = "features",
        identity_weight: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(generator, discriminator, *args, **kwargs)
        self.pixel_weight = _weight("pixel_weight", pixel_weight)
        self.pyramid_weight = _weight("pyramid_weight", pyramid_weight)
        self.perceptual_weight = _weight("perceptual_weight", perceptual_weight)
        self.style_weight = _weight("style_weight", style_weight)
        self.adversarial_weight = _weight("adversarial_weight", adversarial_weight)
        self.identity_weight = _weight("identity_weight", identity_weight)
        if isinstance(pyramid_steps, bool) or not isinstance(pyramid_steps, int) or pyramid_steps < 0:
            raise ConfigError(f"model.pyramid_steps={pyramid_steps!r} is invalid: expected an int >= 0")
        self.pyramid_steps = pyramid_steps

        perceptual = feature_network_or_none(perceptual)
        self.perceptual: nn.Module | None = None
        self.perceptual_layers: dict[str, float] = {}
        if perceptual is not None and (self.perceptual_weight > 0 or self.style_weight > 0):
            layers = tuple(getattr(perceptual, "layers", ()))
            if perceptual_layers is not None:
                weights = {str(k): float(v) for k, v in dict(perceptual_layers).items()}
            elif set(VGG_LAYER_WEIGHTS) <= set(layers):
                weights = dict(VGG_LAYER_WEIGHTS)
            else:
                # The classifier's penultimate vector has no Gram matrix: its conv blocks only.
                weights = {name: 1.0 for name in layers if name != "features"}
            unknown = sorted(set(weights) - set(layers))
            if unknown or not weights:
                raise ConfigError(
                    f"model.perceptual_layers: {unknown or 'no spatial layers'} not among the perceptual "
                    f"network's layers {list(layers)}"
                )
            # Frozen and fixed: its weights stay out of checkpoints (VGG19 would add 80 MB to each).
            self.perceptual = keep_out_of_checkpoints(perceptual)
            self.perceptual_layers = weights

        identity = feature_network_or_none(identity, key="model.identity")
        self.identity: nn.Module | None = None
        self.identity_layer = str(identity_layer)
        if identity is not None and self.identity_weight > 0:
            if self.identity_layer not in tuple(getattr(identity, "layers", ())):
                raise ConfigError(
                    f"model.identity_layer={identity_layer!r} is not a layer of model.identity: valid: "
                    f"{list(getattr(identity, 'layers', ()))}"
                )
            self.identity = keep_out_of_checkpoints(identity)

    # ----------------------------------------------------------------- checks
    def check_networks(self, generator: nn.Module, discriminator: nn.Module) -> None:
        """G restores (C, S, S) images at their size; D judges G's outputs."""
        super().check_networks(generator, discriminator)
        g_in, g_out = tuple(generator.input_shape), tuple(generator.output_shape)
        d_in = tuple(discriminator.input_shape)
        if g_in != g_out:
            raise ConfigError(
                f"GFP-GAN restores an image at its size, but model.generator maps {g_in} -> {g_out}"
            )
        if d_in != g_out:
            raise ConfigError(
                f"model.discriminator judges {d_in} images but model.generator makes {g_out}; set "
                f"model.discriminator.channels={g_out[0]} and model.discriminator.image_size={g_out[-1]}"
            )

    def prepare_feature_network(self, datamodule: Any) -> None:
        """The perceptual network and the identity network read the data they need (the
        domain classifier is loaded or trained once) before anything is written."""
        super().prepare_feature_network(datamodule)
        prepare = getattr(self.identity, "prepare", None)
        if prepare is not None:
            prepare(datamodule)

    # ------------------------------------------------------------------ losses
    def feature_losses(self, restored: Tensor, clean: Tensor) -> tuple[Tensor, Tensor]:
        """(perceptual, style): the weighted L1 of φ's features and of their Gram matrices."""
        features = self.perceptual(restored)
        with torch.no_grad():
            targets = self.perceptual(clean)
        perceptual = restored.new_zeros(())
        style = restored.new_zeros(())
        for name, weight in self.perceptual_layers.items():
            perceptual = perceptual + weight * F.l1_loss(features[name], targets[name])
            if features[name].dim() == 4:
                style = style + weight * F.l1_loss(gram_matrix(features[name]), gram_matrix(targets[name]))
        return perceptual, style

    def identity_loss(self, restored: Tensor, clean: Tensor) -> Tensor:
        """L1 between η's features of the restoration and of the clean image (eq. 8)."""
        ours = self.identity(restored)[self.identity_layer]
        with torch.no_grad():
            target = self.identity(clean)[self.identity_layer]
        return F.l1_loss(ours, target)

    def generator_loss(self, degraded: Tensor, clean: Tensor) -> tuple[Tensor, GeneratorLoss]:
        """(the restoration, L_G of the module docstring with each term logged unweighted)."""
        restored, pyramid = self.generator(degraded, return_pyramid=True)
        terms: dict[str, Tensor] = {}
        loss = restored.new_zeros(())
        if self.pixel_weight > 0:
            terms["l1"] = F.l1_loss(restored, clean)
            loss = loss + self.pixel_weight * terms["l1"]
        if self.pyramid_weight > 0 and self.global_step < self.pyramid_steps:
            targets = image_pyramid(clean, [int(level.shape[-1]) for level in pyramid])
            terms["pyramid"] = sum(F.l1_loss(o, t) for o, t in zip(pyramid, targets, strict=True))
            loss = loss + self.pyramid_weight * terms["pyramid"]
        if self.perceptual is not None:
            terms["perceptual"], terms["style"] = self.feature_losses(restored, clean)
            loss = loss + self.perceptual_weight * terms["perceptual"] + self.style_weight * terms["style"]
        if self.adversarial_weight > 0:
            scores = self.discriminator(self.add_instance_noise(restored))
            terms["adv"] = self.objective.adversarial.generator_loss(scores)
            loss = loss + self.adversarial_weight * terms["adv"]
        if self.identity is not None:
            terms["identity"] = self.identity_loss(restored, clean)
            loss = loss + self.identity_weight * terms["identity"]
        return restored, GeneratorLoss(loss, terms)

    # ------------------------------------------------------------------- step
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        chunks = self.critic_chunks(batch[0], batch[1])
        degraded, clean = chunks[0]
        # The reference's order: G (D frozen by the optimiser toggle), then D on that restoration.
        with self.optimizer_phase(opt_g):
            restored, g_loss = self.generator_loss(degraded, clean)
            logs = self.generator_update(opt_g, g_loss)
        logs.update(self.unconditional_discriminator_step(clean, restored.detach(), opt_d))
        for degraded_k, clean_k in chunks[1:]:
            with torch.no_grad():
                restored_k = self.generator(degraded_k)
            logs.update(self.unconditional_discriminator_step(clean_k, restored_k, opt_d))
        self.finish_step(logs, batch_size=degraded.shape[0])

    # -------------------------------------------------------------- inference
    @torch.no_grad()
    def translate(self, a: Tensor, z: Tensor | None = None) -> Tensor:
        """Restorations with the prior's noise inputs fixed (reproducible scores and grids)."""
        net = self.translator(self.sampling_generator)
        mode = getattr(net, "noise_mode", None)
        if mode is None:
            return super().translate(a, z)
        net.noise_mode = "const"
        try:
            return super().translate(a, z)
        finally:
            net.noise_mode = mode
