"""Feed-forward neural style transfer (Johnson, Alahi & Fei-Fei 2016, "Perceptual Losses for
Real-Time Style Transfer and Super-Resolution", arXiv:1603.08155), trained as a run like every
other family, with an optional adversarial term on texture patches (Li & Wand 2016, "Precomputed
Real-Time Texture Synthesis with Markovian Generative Adversarial Networks", arXiv:1604.04382).

A transformation network T (the generator) maps a content image x to a stylised image ŷ = T(x),
trained on a dataset of content images against ONE style image s. Its loss (Johnson et al. §3):

    L(ŷ) = λ_c · ℓ_feat(ŷ, x) + λ_s · Σ_l w_l ℓ_style^l(ŷ, s) + λ_TV · TV(ŷ) + λ_adv · ℓ_adv(ŷ),

- ℓ_feat: feature reconstruction at ``content_layer`` of a frozen feature network (the
  ``perceptual`` group), the mean squared difference (eq. 2: 1/(C H W) ||φ(ŷ) − φ(x)||²);
- ℓ_style: squared difference of Gram matrices at ``style_layers`` (eq. 3–4, with
  :class:`~gan_research.losses.perceptual.StyleLoss`'s normalisation: each Gram divided by
  C H W, the squared differences averaged over the C × C entries);
- TV: total variation (§3.1, "Simple loss functions"), anisotropic L1;
- ℓ_adv: the ``loss`` group's generator loss against a PatchGAN D that tells patches of the
  style image from patches of ŷ (Li & Wand's Markovian D). ``adversarial_weight: 0`` is
  Johnson et al.'s method: D still trains, as a learned critic of how far ŷ's texture is from
  the style's (``train/d_*`` diagnostics), but T never sees it.

The paper's T is c9s1-32, d64, d128, R128×5, u64, u32, c9s1-3 with batch norm; the experiment
uses CycleGAN's ResNet generator (``networks/resnet_generator.py``, itself after Johnson's
network) with ``ngf = width``, 5 blocks and instance norm, which Ulyanov, Vedaldi & Lempitsky
2016 ("Instance Normalization: The Missing Ingredient for Fast Stylization") showed to be what
makes feed-forward stylisation work; its stem and head convolutions are 7×7 instead of 9×9.

D's real batch is the style image with random circular shifts and mirroring (one draw per
sample), so it sees the style's texture at every position, as patches of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from gan_research.errors import ConfigError
from gan_research.families.base import GeneratorLoss
from gan_research.families.image_to_image import ImageToImageModule
from gan_research.losses.perceptual import PerceptualLoss, StyleLoss, total_variation
from gan_research.utils.data_spec import DataKind, require_kind
from gan_research.utils.weights import keep_out_of_checkpoints


def _weight(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"model.{key}={value!r} is invalid: expected a float >= 0")
    return float(value)


class FeedForwardStyleTransfer(ImageToImageModule):
    """Johnson et al.'s transformation network, trained on content images against one style image.

    Args:
        perceptual: the frozen feature network (``perceptual`` group: ``layers``,
            ``forward(x) -> {layer: features}``, optional ``prepare(datamodule)``).
        style_image: the style image, (C, H, W) in [-1, 1] (``data/styles.py``: a procedural
            style or an image file); its channels are the output's.
        content_layer: the layer of ℓ_feat (Johnson et al.: relu2_2 of VGG16; here any layer
            the perceptual network returns).
        style_layers: the layers of ℓ_style, equally weighted (a list; Johnson et al.: relu1_2 …
            relu4_3), or ``{layer: weight}``.
        content_weight, style_weight, tv_weight: λ_c, λ_s, λ_TV.
        adversarial_weight: λ_adv (0: Johnson et al.; > 0: Li & Wand's Markovian adversarial term).
        *args, **kwargs: those of :class:`~gan_research.families.image_to_image.ImageToImageModule`.
    """

    data_kinds = (DataKind.IMAGES,)

    def __init__(
        self,
        *args: Any,
        perceptual: nn.Module | None = None,
        style_image: Tensor | None = None,
        content_layer: str = "relu2_2",
        style_layers: Sequence[str] | Mapping[str, float] | None = None,
        content_weight: float = 1.0,
        style_weight: float = 1.0e4,
        tv_weight: float = 1.0e-4,
        adversarial_weight: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if perceptual is None or not isinstance(perceptual, nn.Module):
            raise ConfigError(
                "model=style_transfer needs a feature network: choose perceptual=vgg19 (the paper's; needs "
                "vgg19-dcbaabe7.pth), perceptual=classifier or perceptual=random"
            )
        if not isinstance(style_image, Tensor) or style_image.dim() != 3:
            raise ConfigError(
                "model.style_image must be an image (C, H, W) (see conf/model/style_transfer.yaml)"
            )
        out_channels = int(self.generator.output_shape[0])
        if style_image.shape[0] != out_channels:
            raise ConfigError(
                f"the style image has {style_image.shape[0]} channel(s) but model.generator makes "
                f"{out_channels}; set model.style_image.channels={out_channels}"
            )
        layers = tuple(getattr(perceptual, "layers", ()))
        # A list weighs its layers equally (Johnson et al.); a mapping gives each its weight.
        if isinstance(style_layers, Mapping):
            style_layers = {str(k): float(v) for k, v in style_layers.items()}
        else:
            style_layers = {str(name): 1.0 for name in (style_layers or [])}
        missing = [name for name in [content_layer, *style_layers] if name not in layers]
        if missing:
            raise ConfigError(
                f"model.content_layer / model.style_layers name {missing}, which the perceptual network "
                f"does not return; it returns {list(layers)} (set perceptual.layers to include them)"
            )
        if not style_layers:
            raise ConfigError(
                f"model.style_layers is empty: give layers (or {{layer: weight}}) from {list(layers)}"
            )
        self.content_weight = _weight("content_weight", content_weight)
        self.style_weight = _weight("style_weight", style_weight)
        self.tv_weight = _weight("tv_weight", tv_weight)
        self.adversarial_weight = _weight("adversarial_weight", adversarial_weight)
        # Frozen and fixed: a submodule (it follows the device) kept out of checkpoints.
        self.perceptual = keep_out_of_checkpoints(perceptual)
        self.content_loss = PerceptualLoss(perceptual, {content_layer: 1.0}, criterion="mse")
        self.style_loss = StyleLoss(perceptual, style_layers)
        self.register_buffer("style_image", style_image.detach().float().clone(), persistent=False)
        self._style_set = False

    # ----------------------------------------------------------------- checks
    def check_networks(self, generator: nn.Module, discriminator: nn.Module) -> None:
        """T maps (C_in, H, W) to (C_out, H, W); D judges (C_out, H, W) images."""
        super().check_networks(generator, discriminator)
        g_in, g_out, d_in = (
            tuple(s) for s in (generator.input_shape, generator.output_shape, discriminator.input_shape)
        )
        if g_in[1:] != g_out[1:]:
            raise ConfigError(
                f"model.generator maps {g_in} to {g_out}: a stylised image keeps its content's size"
            )
        if d_in != g_out:
            raise ConfigError(
                f"model.discriminator judges {d_in} images but model.generator makes {g_out}; set "
                f"model.discriminator.input_channels={g_out[0]} and image_size={g_out[-1]}"
            )

    def check_data(self, datamodule: Any) -> None:
        """Content images of T's input shape; the perceptual network prepares itself on them."""
        spec = datamodule.spec
        require_kind(spec, self.data_kinds, f"model {type(self).__name__}")
        g_in = tuple(self.generator.input_shape)
        if tuple(spec.sample_shape) != g_in:
            raise ConfigError(
                f"dataset '{spec.name}' has images of shape {tuple(spec.sample_shape)}, but model.generator "
                f"takes {g_in}; set model.generator.input_channels={spec.sample_shape[0]} and "
                f"model.generator.image_size={spec.sample_shape[-1]}"
            )
        self.prepare_feature_network(datamodule)

    # ------------------------------------------------------------------ losses
    def _ensure_style(self) -> None:
        if not self._style_set:
            self.style_loss.set_style(self.style_image[None].to(self.device))
            self._style_set = True

    def style_terms(self, content: Tensor, stylised: Tensor) -> dict[str, Tensor]:
        """The unweighted terms of ŷ = ``stylised`` for ``content``: ``content``, ``style``, ``tv``."""
        self._ensure_style()
        return {
            "content": self.content_loss(stylised, content),
            "style": self.style_loss(stylised),
            "tv": total_variation(stylised),
        }

    def style_batch(self, n: int) -> Tensor:
        """``n`` views of the style image, each circularly shifted by a random offset and randomly
        mirrored: D's real patches."""
        image = self.style_image.to(self.device)
        h, w = image.shape[-2:]
        shifts = torch.randint(0, h * w, (n,), device="cpu").tolist()
        flips = torch.rand(n, device="cpu").lt(0.5).tolist()
        views = []
        for shift, flip in zip(shifts, flips, strict=True):
            view = torch.roll(image, shifts=(shift // w, shift % w), dims=(-2, -1))
            views.append(view.flip(-1) if flip else view)
        return torch.stack(views)

    # ------------------------------------------------------------------- step
    def training_step(self, batch: Any, batch_idx: int) -> None:
        content = batch[0]
        opt_g, opt_d = self.optimizers()
        stylised = self.generator(content)
        style = self.style_batch(content.shape[0])
        logs = self.unconditional_discriminator_step(style, stylised.detach(), opt_d)
        with self.optimizer_phase(opt_g):
            terms = self.style_terms(content, stylised)
            scores = self.discriminator(self.add_instance_noise(stylised))
            real_scores = self.real_scores_for_generator(
                lambda: self.discriminator(self.add_instance_noise(style))
            )
            adv = self.objective.adversarial.generator_loss(scores, real_scores)
            loss = (
                self.content_weight * terms["content"]
                + self.style_weight * terms["style"]
                + self.tv_weight * terms["tv"]
                + self.adversarial_weight * adv
            )
            logs.update(self.generator_update(opt_g, GeneratorLoss(loss, {**terms, "adv": adv})))
        self.finish_step(logs, batch_size=content.shape[0])

    def grid_columns(self, a: Tensor, b: Tensor) -> list[Tensor]:
        """style | content | stylised (``b``, the content images' labels, is not shown)."""
        style = self.style_image.cpu()[None].expand(a.shape[0], -1, -1, -1)
        return [style, a, self.translate(a).cpu()]
