"""SRGAN: photo-realistic single-image super-resolution with a GAN (Ledig et al. 2017,
"Photo-Realistic Single Image Super-Resolution Using a Generative Adversarial Network",
arXiv:1609.04802).

G (SRResNet, ``networks/srgan.py``) maps a low-resolution image to a ``scale`` times larger
one; D judges high-resolution images alone (real HR crops against G's outputs). G minimises
the perceptual loss of eq. 3,

    l^SR = l^SR_X + 10⁻³ · l^SR_Gen,

with the content loss l_X either the pixel-wise MSE (eq. 4, "SRResNet-MSE") or the MSE between
feature maps of a perceptual network (eq. 5: φ_{5,4} of VGG19, "VGG54") — ``content_loss`` and
the ``perceptual`` config group — and l_Gen the adversarial loss (eq. 6: -log D(G(I^LR)), the
``loss`` group's non-saturating loss; any ``loss=`` works). The paper rescales VGG feature maps
by 1/12.75 "to obtain VGG losses of a scale that is comparable to the MSE loss" (§3.2):
``feature_scale``. ``adversarial_weight`` is the 10⁻³.

Training (§3.2) has two phases, both in one run here: ``schedule.pretrain_steps`` steps of
SRResNet pre-training on the content loss alone (D neither updated nor asked), then adversarial
training initialised with the pre-trained G, with the learning rate dropped 10× part-way
(``schedule.lr_decay=step``). ``schedule.pretrain_steps >= max_steps`` trains SRResNet alone.
The paper pre-trains SRResNet with the MSE loss and fine-tunes SRGAN with the VGG54 loss; here
the content loss is one setting for the run (pixel for both phases unless a perceptual network
is chosen), a documented simplification: the perceptual loss then also drives pre-training.

The perceptual network is frozen and fixed: a submodule (it moves with the model) whose weights
are kept out of checkpoints (``utils/weights.keep_out_of_checkpoints``; VGG19's 80 MB would
otherwise be copied into every one).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_research.errors import ConfigError
from gan_research.families.base import GeneratorLoss
from gan_research.families.image_to_image import ImageToImageModule
from gan_research.losses.perceptual import PerceptualLoss, feature_network_or_none
from gan_research.utils.images import resize_bicubic
from gan_research.utils.weights import keep_out_of_checkpoints

CONTENT_LOSSES = ("pixel", "perceptual")
# The paper's rescaling of VGG feature maps (§3.2): features / 12.75.
VGG_FEATURE_SCALE = 12.75


def _upsample_nearest(images: Tensor, size: int) -> Tensor:
    return F.interpolate(images.float(), size=(size, size), mode="nearest")


class SRGAN(ImageToImageModule):
    """SRGAN on (low-resolution, high-resolution) pairs: G upsamples, D judges HR images.

    Args:
        content_loss: ``pixel`` (eq. 4, MSE of the images) or ``perceptual`` (eq. 5, MSE of the
            ``perceptual`` network's ``content_layer`` features divided by ``feature_scale``,
            :class:`~gan_research.losses.perceptual.PerceptualLoss`).
        perceptual: a frozen feature network (the ``perceptual`` config group: ``forward(x)`` →
            ``{layer: features}``, ``layers``, optional ``prepare(datamodule)``); needed for
            ``content_loss=perceptual``.
        content_layer: the feature layer of eq. 5 (VGG54 = ``relu5_4``).
        feature_scale: the features are divided by it before the MSE (12.75 for VGG).
        adversarial_weight: the 10⁻³ of eq. 3 (0: SRResNet, G never sees D).
        *args, **kwargs: those of :class:`~gan_research.families.image_to_image.ImageToImageModule`.
    """

    pretrain_loss = True

    def __init__(
        self,
        *args: Any,
        content_loss: str = "pixel",
        perceptual: nn.Module | None = None,
        content_layer: str = "relu5_4",
        feature_scale: float = VGG_FEATURE_SCALE,
        adversarial_weight: float = 1e-3,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        perceptual = feature_network_or_none(perceptual)
        if content_loss not in CONTENT_LOSSES:
            raise ConfigError(
                f"model.content_loss={content_loss!r} is invalid; valid: {list(CONTENT_LOSSES)}"
            )
        if content_loss == "perceptual":
            if perceptual is None:
                raise ConfigError(
                    "model.content_loss=perceptual needs a feature network: choose perceptual=vgg19 (the "
                    "paper's VGG54; needs vgg19-dcbaabe7.pth), perceptual=classifier or perceptual=random"
                )
            layers = tuple(getattr(perceptual, "layers", ()))
            if content_layer not in layers:
                raise ConfigError(
                    f"model.content_layer={content_layer!r} is not a layer the perceptual network returns; "
                    f"it returns {list(layers)} (set perceptual.layers to include it)"
                )
        if (
            isinstance(adversarial_weight, bool)
            or not isinstance(adversarial_weight, (int, float))
            or adversarial_weight < 0
        ):
            raise ConfigError(
                f"model.adversarial_weight={adversarial_weight!r} is invalid: expected a float >= 0"
            )
        self.content_loss_kind = content_loss
        self.content_layer = content_layer
        self.adversarial_weight = float(adversarial_weight)
        self.perceptual: nn.Module | None = None
        self.feature_loss: PerceptualLoss | None = None
        if content_loss == "perceptual":
            assert perceptual is not None
            # Frozen and fixed: its weights stay out of checkpoints (VGG19 would add 80 MB to each).
            self.perceptual = keep_out_of_checkpoints(perceptual)
            self.feature_loss = PerceptualLoss(
                perceptual, {content_layer: 1.0}, criterion="mse", feature_scale=feature_scale
            )

    # ----------------------------------------------------------------- checks
    def check_networks(self, generator: nn.Module, discriminator: nn.Module) -> None:
        """G maps (C, s, s) to (C, scale·s, scale·s); D judges G's outputs."""
        super().check_networks(generator, discriminator)
        g_out, d_in = tuple(generator.output_shape), tuple(discriminator.input_shape)
        if g_out != d_in:
            raise ConfigError(
                f"model.discriminator judges {d_in} images but model.generator makes {g_out}; set "
                f"model.discriminator.channels={g_out[0]} and model.discriminator.image_size={g_out[-1]}"
            )

    # ------------------------------------------------------------------ losses
    def content_loss(self, sr: Tensor, hr: Tensor) -> Tensor:
        """l_X: pixel MSE (eq. 4) or the scaled feature MSE at ``content_layer`` (eq. 5)."""
        if self.feature_loss is None:
            return F.mse_loss(sr, hr)
        return self.feature_loss(sr, hr)

    # ------------------------------------------------------------------- step
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        lr_all, hr_all = batch[0], batch[1]
        opt_g, opt_d = self.optimizers()
        if self.pretraining:
            # SRResNet pre-training (§3.2): the content loss alone, D untouched.
            with self.optimizer_phase(opt_g):
                sr = self.generator(lr_all)
                content = self.content_loss(sr, hr_all)
                logs = self.generator_update(opt_g, GeneratorLoss(content, {"content": content}))
            self.finish_step(logs, batch_size=lr_all.shape[0])
            return
        chunks = self.critic_chunks(lr_all, hr_all)
        logs: dict[str, Tensor] = {}
        for lr, hr in chunks[:-1]:
            with torch.no_grad():
                sr = self.generator(lr)
            logs.update(self.unconditional_discriminator_step(hr, sr, opt_d))
        lr, hr = chunks[-1]
        # One forward for both phases: D learns from the detached output, then G is scored by
        # the updated D on that same output.
        sr = self.generator(lr)
        logs.update(self.unconditional_discriminator_step(hr, sr.detach(), opt_d))
        logs.update(self.generator_step(hr, sr, opt_g))
        self.finish_step(logs, batch_size=lr.shape[0])

    def generator_step(self, hr: Tensor, sr: Tensor, opt_g: Any) -> dict[str, Tensor]:
        """One G update on eq. 3: content + adversarial_weight · adversarial (D frozen by the toggle)."""
        with self.optimizer_phase(opt_g):
            content = self.content_loss(sr, hr)
            real_scores = self.real_scores_for_generator(
                lambda: self.discriminator(self.add_instance_noise(hr))
            )
            g_adv = self.objective.adversarial.generator_loss(
                self.discriminator(self.add_instance_noise(sr)), real_scores
            )
            loss = content + self.adversarial_weight * g_adv
            return self.generator_update(opt_g, GeneratorLoss(loss, {"content": content, "adv": g_adv}))

    # ------------------------------------------------------------------- grids
    def grid_columns(self, a: Tensor, b: Tensor) -> list[Tensor]:
        """LR (nearest-upsampled, so its pixels show) | bicubic | SR | HR."""
        size = int(b.shape[-1])
        return [_upsample_nearest(a, size), resize_bicubic(a, size), self.translate(a).cpu(), b]
