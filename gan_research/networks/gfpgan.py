"""GFP-GAN's generator (Wang, Li, Zhang & Shan 2021, "Towards Real-World Blind Face Restoration with
Generative Facial Prior", arXiv:2101.04061, Sec. 3, Fig. 2).

A degradation-removal U-Net reads the degraded image x and gives a latent code from its
bottleneck and multi-resolution spatial features from its decoder (Sec. 3.2, eq. 1)::

    F_latent, F_spatial = U-Net(x)

The latent code is mapped to StyleGAN2 latents, and a pretrained StyleGAN2 synthesis network (the
generative facial prior) turns them into features at every resolution (Sec. 3.3, eq. 2)::

    W = MLP(F_latent),  F_GAN = StyleGAN(W)

and at each resolution the prior's features are modulated by a channel-split spatial feature
transform predicted from the U-Net decoder's features of that resolution (Sec. 3.4, α, β =
M(F_spatial), F_output = Concat[Identity(F_split0), α ⊙ F_split1 + β]: our
:class:`~gan_research.networks.gfpgan_layers.CSSFT`).

Reference: TencentARC/GFPGAN, ``gfpgan/archs/gfpganv1_clean_arch.py`` (``GFPGANv1Clean``, plain
convolutions, which we follow) and ``gfpgan/archs/gfpganv1_arch.py`` (``GFPGANv1``), with the
released config ``options/train_gfpgan_v1.yml`` (``input_is_latent: true``, ``different_w:
true``, ``sft_half: true``, ``fix_decoder: true``, ``narrow: 1``). The reference's layout, for an
output of side S = 2^L:

- encoder: ``conv_body_first`` (1×1 conv + LeakyReLU(0.2)) at S; L − 2 residual down blocks
  (``ResBlock(mode='down')``: conv3×3 → lrelu → bilinear ×½ → conv3×3 → lrelu, plus a bilinear ×½
  → 1×1 conv skip), whose outputs at S/2, …, 4 are the U-Net skips; ``final_conv`` (3×3 + lrelu)
  at 4×4; ``final_linear`` of the flattened 4×4 features to ``num_ws · w_dim`` (``different_w``:
  one w per style input, W+) or ``w_dim`` (one w for all);
- decoder: for r = 8, 16, …, S: add the skip of resolution r/2 (the one the features have at that
  point: the 4×4 skip before the first up block), a residual up block to r, then the condition
  nets (:class:`CSSFT`) read these features and a 1×1 to-RGB conv gives the level's image for the
  pyramid loss;
- prior: StyleGAN2 from its constant, with the CS-SFT of resolution r applied after the first
  (upsampling) styled conv of r (``StyleGAN2GeneratorCSFT.forward``: after ``conv1``; ours is
  ``b{r}_conv0``), for every r ≥ 8. The latents go straight to the synthesis network
  (``input_is_latent``): the prior's mapping network is unused.

Differences from the reference:

- the prior is this framework's StyleGAN2 (:class:`~gan_research.networks.stylegan.SynthesisNetwork`,
  ``version=2``: bilinear resampling instead of FIR filters), stored as ``synthesis`` so a
  StyleGAN2 run's synthesis weights load 1:1 (:meth:`GFPGANGenerator.load_prior`);
- widths follow ``feature_channels(r, fmap_base, fmap_max)``: ``fmap_base``/``fmap_max`` those of
  the prior, ``unet_fmap_base``/``unet_fmap_max`` those of the U-Net (default: the prior's). The
  reference's U-Net is half as wide as its prior (``unet_narrow = narrow * 0.5``), so with
  ``sft_half`` its condition nets have exactly as many channels as the half they modulate; set
  ``unet_fmap_base = fmap_base // 2`` and ``unet_fmap_max = fmap_max // 2`` for that;
- ``sft_split`` generalises ``sft_half`` (0.5: ``sft_half=True``, 1: ``False``), see :class:`CSSFT`;
- image channels are ``channels`` (the reference: 3), and sides from 8 px up are accepted.

The output is the prior's image with no tanh (as the reference): like the StyleGAN2 generator's,
it is in [-1, 1] because training makes it so, not by construction.

:class:`FacialComponentDiscriminator` is the reference's local discriminator of one facial
component (Sec. 3.4, eq. 7; ``gfpganv1_arch.py``, ``FacialComponentDiscriminator``), which the
family trains per region of the data (``families/gfpgan.py``).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from gan_research.errors import CheckpointError, ConfigError
from gan_research.networks.gfpgan_layers import CSSFT
from gan_research.networks.stylegan import (
    NOISE_MODES,
    SynthesisNetwork,
    _upsample,
    feature_channels,
    num_styles,
)
from gan_research.utils.safe_config import load_weights_only
from gan_research.utils.validation import check_positive_int
from gan_research.utils.weights import WeightsFileMissing, initial_weights_needed

__all__ = [
    "MIN_COMPONENT_SIZE",
    "MIN_IMAGE_SIZE",
    "PRIOR_KEY",
    "FacialComponentDiscriminator",
    "GFPGANGenerator",
    "ResBlock",
    "describe_prior",
]

#: The smallest output side: the U-Net needs one down block from it to its 4×4 bottleneck.
MIN_IMAGE_SIZE = 8
#: The smallest crop side a :class:`FacialComponentDiscriminator` judges (it halves twice).
MIN_COMPONENT_SIZE = 4
#: The config key of the prior's checkpoint, named by every loading error.
PRIOR_KEY = "model.generator.prior_checkpoint"
# LeakyReLU slope of every U-Net layer (the reference's negative_slope=0.2).
LRELU_SLOPE = 0.2
# Where a StyleGAN2 run's weights sit in its Lightning checkpoint: the family's ``generator`` /
# ``generator_ema``, whose synthesis network is ``synthesis_network`` (StyleGANGenerator) or
# ``synthesis`` (a GFPGANGenerator's prior, so a GFP-GAN run can hand its prior on).
_SYNTHESIS_ATTRS = ("synthesis_network.", "synthesis.")
_HOW_TO_MAKE = (
    "Expected a Lightning checkpoint of this framework's StyleGAN2 family; make one with "
    "`gan-train experiment=stylegan2_digits` (a 32 px, 1-channel prior; its checkpoints/last.ckpt)"
)


class ResBlock(nn.Module):
    """The reference's residual resampling block (``gfpganv1_clean_arch.py``, ``ResBlock``).

    ``lrelu(conv3×3(resample(lrelu(conv3×3(x)))))`` plus ``conv1×1(resample(x))`` (no bias), with
    bilinear ×½ (``mode="down"``) or ×2 (``mode="up"``) resampling and LeakyReLU(0.2).
    """

    def __init__(self, in_channels: int, out_channels: int, mode: str = "down") -> None:
        super().__init__()
        if mode not in ("down", "up"):
            raise ConfigError(f"ResBlock: mode={mode!r} is invalid: expected one of ['down', 'up']")
        self.scale_factor = 0.5 if mode == "down" else 2.0
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def _resample(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=self.scale_factor, mode="bilinear", align_corners=False)

    def forward(self, x: Tensor) -> Tensor:
        out = F.leaky_relu(self.conv1(x), LRELU_SLOPE)
        out = F.leaky_relu(self.conv2(self._resample(out)), LRELU_SLOPE)
        return out + self.skip(self._resample(x))


class FacialComponentDiscriminator(nn.Module):
    """The local discriminator of one facial component (Sec. 3.4, eq. 7): real or restored crops
    of one region (an eye, the mouth) → a map of logits, and, when asked, the two intermediate
    feature maps whose Gram matrices GFP-GAN's component style loss compares.

    The reference's VGG-style layout (TencentARC/GFPGAN, ``gfpgan/archs/gfpganv1_arch.py``,
    ``FacialComponentDiscriminator``), with w = ``width`` (the reference: 64)::

        conv1  3×3  channels → w                  LeakyReLU(0.2)
        conv2  ×½, 3×3  w → 2w                    LeakyReLU(0.2)
        conv3  3×3  2w → 2w                       LeakyReLU(0.2)   → feature 0 (side S/2)
        conv4  ×½, 3×3  2w → 4w                   LeakyReLU(0.2)
        conv5  3×3  4w → 4w                       LeakyReLU(0.2)   → feature 1 (side S/4)
        final_conv  3×3  4w → 1                   logits (B, 1, S/4, S/4), a patch map

    Differences from the reference: plain convolutions (no equalised learning rate) and plain
    LeakyReLU (no √2 gain), and the downsampling layers halve bilinearly (a 2×2 average) before a
    3×3 convolution instead of StyleGAN2's FIR blur and a strided convolution, as this file's
    :class:`ResBlock`; ``channels`` and ``width`` are arguments (the reference: 3 and 64).

    Args:
        channels: image channels of the crops.
        width: w, the first layer's width (the others 2w and 4w).
    """

    def __init__(self, channels: int = 3, width: int = 64) -> None:
        super().__init__()
        check_positive_int("FacialComponentDiscriminator", "channels", channels)
        check_positive_int("FacialComponentDiscriminator", "width", width)
        self.channels = channels
        self.width = width
        w = width
        self.conv1 = nn.Conv2d(channels, w, 3, padding=1)
        self.conv2 = nn.Conv2d(w, 2 * w, 3, padding=1)
        self.conv3 = nn.Conv2d(2 * w, 2 * w, 3, padding=1)
        self.conv4 = nn.Conv2d(2 * w, 4 * w, 3, padding=1)
        self.conv5 = nn.Conv2d(4 * w, 4 * w, 3, padding=1)
        self.final_conv = nn.Conv2d(4 * w, 1, 3, padding=1)

    @staticmethod
    def _down(x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Crops (B, channels, H, W), sides >= :data:`MIN_COMPONENT_SIZE` → logits
        (B, 1, H // 4, W // 4), or with ``return_features`` ``(logits, [feature0, feature1])``
        (B, 2w, H // 2, W // 2) and (B, 4w, H // 4, W // 4)."""
        if x.dim() != 4 or x.shape[1] != self.channels or min(x.shape[-2:]) < MIN_COMPONENT_SIZE:
            raise ValueError(
                f"FacialComponentDiscriminator: expected crops (B, {self.channels}, H, W) with H, W >= "
                f"{MIN_COMPONENT_SIZE}, got {tuple(x.shape)}"
            )
        feat = F.leaky_relu(self.conv1(x), LRELU_SLOPE)
        feat = F.leaky_relu(self.conv2(self._down(feat)), LRELU_SLOPE)
        first = F.leaky_relu(self.conv3(feat), LRELU_SLOPE)
        feat = F.leaky_relu(self.conv4(self._down(first)), LRELU_SLOPE)
        second = F.leaky_relu(self.conv5(feat), LRELU_SLOPE)
        logits = self.final_conv(second)
        return (logits, [first, second]) if return_features else logits


def describe_prior(state: Mapping[str, Tensor]) -> str:
    """In words, the StyleGAN2 synthesis network a state dict (keys relative to it) holds:
    resolution, image channels, w_dim and widths per resolution, read off its to-RGB layers."""
    resolutions = sorted(
        int(m.group(1)) for key in state if (m := re.fullmatch(r"to_rgb\.b(\d+)\.bias", key))
    )
    if not resolutions:
        return "a synthesis network without StyleGAN2 to-RGB layers"
    top = resolutions[-1]
    channels = state[f"to_rgb.b{top}.bias"].shape[0]
    affine = state.get(f"to_rgb.b{top}.conv.affine.weight")  # (in_channels, w_dim)
    w_dim = affine.shape[1] if affine is not None and affine.dim() == 2 else "?"
    widths = {}
    for r in resolutions:
        weight = state.get(f"to_rgb.b{r}.conv.weight")  # (channels, width, 1, 1)
        widths[r] = weight.shape[1] if weight is not None and weight.dim() == 4 else "?"
    return f"a {top} px, {channels}-channel StyleGAN2 with w_dim {w_dim} and widths {widths}"


class GFPGANGenerator(nn.Module):
    """GFP-GAN's generator: degraded image → restored image through a StyleGAN2 prior.

    Args:
        image_size: side S of input and output, a power of two >= 8.
        channels: image channels (input and output).
        w_dim: the prior's w size.
        fmap_base, fmap_max: the prior's widths, ``min(fmap_base // r, fmap_max)`` at resolution r
            (as :class:`~gan_research.networks.stylegan.SynthesisNetwork`).
        unet_fmap_base, unet_fmap_max: the U-Net's widths, likewise (None: the prior's; the
            reference's U-Net is half as wide as the prior, see the module docstring).
        sft_split: the modulated fraction of the prior's channels at each CS-SFT, in (0, 1] (0.5:
            the reference's ``sft_half=True``; 1: every channel).
        different_w: the encoder gives one w per style input (W+, the reference's
            ``different_w: true``), else one w broadcast to all.
        prior_checkpoint: a StyleGAN2 run's checkpoint to load the prior from (:meth:`load_prior`);
            None leaves the prior randomly initialised (tests, or a family that loads it later).
        prior_use_ema: load the run's EMA generator (``generator_ema``) when it has one.
        prior_trainable: train the prior too; False (the reference's ``fix_decoder: true``)
            freezes it, loaded or not.
        noise_mode: the prior's noise inputs, "random", "const" or "none" (``self.noise_mode`` is
            read at every call; the family sets "const" for evaluation).

    Attributes:
        input_shape, output_shape: ``(channels, image_size, image_size)``.
        num_ws: the prior's style inputs, ``2·log2(S) − 2``.
        resolutions: the decoder levels 8, 16, …, S (one CS-SFT and one pyramid image each).
        synthesis: the prior (StyleGAN2 ``SynthesisNetwork``).
        sft: one :class:`CSSFT` per level, ``sft["b{r}"]``.
        prior_source: the checkpoint the prior was loaded from, or None.
        prior_weights: which of its generators was loaded (``generator_ema`` or ``generator``).
    """

    def __init__(
        self,
        image_size: int,
        channels: int,
        w_dim: int,
        fmap_base: int,
        fmap_max: int,
        unet_fmap_base: int | None = None,
        unet_fmap_max: int | None = None,
        sft_split: float = 0.5,
        different_w: bool = True,
        prior_checkpoint: str | None = None,
        prior_use_ema: bool = True,
        prior_trainable: bool = False,
        noise_mode: str = "random",
    ) -> None:
        super().__init__()
        owner = "model.generator"
        if (
            isinstance(image_size, bool)
            or not isinstance(image_size, int)
            or image_size < MIN_IMAGE_SIZE
            or image_size & (image_size - 1)
        ):
            raise ConfigError(
                f"{owner}.image_size={image_size!r} is invalid: expected a power of two >= {MIN_IMAGE_SIZE} "
                "(8, 16, 32, 64, ...)"
            )
        for name, value in (
            ("channels", channels),
            ("w_dim", w_dim),
            ("fmap_base", fmap_base),
            ("fmap_max", fmap_max),
        ):
            check_positive_int(owner, name, value, form="override")
        for name, value in (("unet_fmap_base", unet_fmap_base), ("unet_fmap_max", unet_fmap_max)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(
                    f"{owner}.{name}={value!r} is invalid: expected a positive integer or null (the prior's)"
                )
        if isinstance(sft_split, bool) or not isinstance(sft_split, (int, float)) or not 0 < sft_split <= 1:
            raise ConfigError(
                f"{owner}.sft_split={sft_split!r} is invalid: expected a number in (0, 1], the modulated "
                "fraction of the prior's channels (0.5: the paper's CS-SFT, 1: plain SFT)"
            )
        for name, value in (
            ("different_w", different_w),
            ("prior_use_ema", prior_use_ema),
            ("prior_trainable", prior_trainable),
        ):
            if not isinstance(value, bool):
                raise ConfigError(f"{owner}.{name}={value!r} is invalid: expected true or false")
        self.noise_mode = self._check_noise_mode(noise_mode)

        self.image_size = image_size
        self.channels = channels
        self.w_dim = w_dim
        self.different_w = different_w
        self.prior_use_ema = prior_use_ema
        self.prior_trainable = prior_trainable
        self.input_shape: tuple[int, ...] = (channels, image_size, image_size)
        self.output_shape: tuple[int, ...] = (channels, image_size, image_size)
        self.num_ws = num_styles(image_size)
        self.resolutions: tuple[int, ...] = tuple(2**k for k in range(3, int(math.log2(image_size)) + 1))
        ub = fmap_base if unet_fmap_base is None else unet_fmap_base
        um = fmap_max if unet_fmap_max is None else unet_fmap_max
        unet = {r: feature_channels(r, ub, um) for r in (4, *self.resolutions)}
        prior = {r: feature_channels(r, fmap_base, fmap_max) for r in (4, *self.resolutions)}

        # Encoder (eq. 1): full resolution → 4×4, each down block's output a skip for the decoder.
        self.conv_body_first = nn.Conv2d(channels, unet[image_size], 1)
        self.conv_body_down = nn.ModuleList(
            ResBlock(unet[r], unet[r // 2], mode="down") for r in reversed(self.resolutions)
        )
        self.final_conv = nn.Conv2d(unet[4], unet[4], 3, padding=1)
        # F_latent → W (eq. 2): the reference's single linear layer, W+ or one w.
        self.final_linear = nn.Linear(unet[4] * 16, (self.num_ws if different_w else 1) * w_dim)
        # Decoder: level r upsamples from r/2; its features are the CS-SFT condition of r.
        self.conv_body_up = nn.ModuleList(
            ResBlock(unet[r // 2], unet[r], mode="up") for r in self.resolutions
        )
        self.pyramid_to_rgb = nn.ModuleList(nn.Conv2d(unet[r], channels, 1) for r in self.resolutions)
        self.sft = nn.ModuleDict(
            {f"b{r}": CSSFT(prior[r], unet[r], split=sft_split) for r in self.resolutions}
        )

        self.synthesis = SynthesisNetwork(w_dim, image_size, channels, fmap_base, fmap_max, version=2)
        # fix_decoder: frozen whether or not weights are loaded (as the reference), so an
        # optimiser built on requires_grad never holds the prior.
        self.synthesis.requires_grad_(prior_trainable)
        self.prior_source: str | None = None
        self.prior_weights: str | None = None
        if prior_checkpoint is not None and str(prior_checkpoint) != "":
            if initial_weights_needed():
                self.load_prior(prior_checkpoint)
            else:
                # Built to receive a GFP-GAN checkpoint (gan-eval), which holds the prior's weights
                # as trained: the prior run itself need not exist any more.
                self.prior_source = str(prior_checkpoint)

    @staticmethod
    def _check_noise_mode(noise_mode: object) -> str:
        if noise_mode not in NOISE_MODES:
            raise ConfigError(
                f"model.generator.noise_mode={noise_mode!r} is invalid: expected one of {list(NOISE_MODES)}"
            )
        return str(noise_mode)

    # ------------------------------------------------------------------ forward
    def encode(self, degraded: Tensor) -> tuple[Tensor, dict[int, Tensor]]:
        """The U-Net (eq. 1–2): ws (B, num_ws, w_dim) and the decoder features {r: (B, C_r, r, r)}."""
        feat = F.leaky_relu(self.conv_body_first(degraded), LRELU_SLOPE)
        skips = []
        for block in self.conv_body_down:
            feat = block(feat)
            skips.append(feat)  # resolutions S/2, …, 4
        feat = F.leaky_relu(self.final_conv(feat), LRELU_SLOPE)
        code = self.final_linear(feat.flatten(1))
        if self.different_w:
            ws = code.view(code.shape[0], self.num_ws, self.w_dim)
        else:
            ws = code[:, None, :].expand(-1, self.num_ws, -1)
        features = {}
        # As the reference: the skip of the features' current resolution r/2 (the 4×4 one before
        # the first up block), then the up block to r.
        for r, block, skip in zip(self.resolutions, self.conv_body_up, reversed(skips), strict=True):
            feat = block(feat + skip)
            features[r] = feat
        return ws, features

    def synthesize(self, ws: Tensor, conditions: Mapping[int, Tensor], noise_mode: str) -> Tensor:
        """The prior with CS-SFT (``StyleGAN2GeneratorCSFT.forward``): ``SynthesisNetwork.forward``'s
        version-2 arithmetic, the CS-SFT of r applied after ``b{r}_conv0`` for every r >= 8."""
        syn = self.synthesis
        x = syn.const.expand(ws.shape[0], -1, -1, -1).to(ws.dtype)
        image = None
        for name, index in syn.layer_styles:
            if name.startswith("torgb"):
                y = syn.to_rgb[f"b{name[5:]}"](x, ws[:, index])
                # StyleGAN2's skip generator: the sum of the upsampled to-RGB outputs.
                image = y if image is None else _upsample(image) + y
            else:
                x = syn.layers[name](x, ws[:, index], noise_mode)
                if name.endswith("_conv0"):
                    r = int(name[1 : -len("_conv0")])
                    x = self.sft[f"b{r}"](x, conditions[r])
        assert image is not None  # every StyleGAN2 synthesis network ends with a to-RGB layer
        return image

    def forward(self, degraded: Tensor, return_pyramid: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """``degraded`` (B, channels, S, S) → the restored image (B, channels, S, S), or with
        ``return_pyramid`` ``(image, [rgb_8, rgb_16, …, rgb_S])``, the U-Net decoder's images of
        every level (for the pyramid loss)."""
        if degraded.dim() != 4 or tuple(degraded.shape[1:]) != self.input_shape:
            raise ValueError(
                f"GFPGANGenerator: expected images (B, {', '.join(map(str, self.input_shape))}), "
                f"got {tuple(degraded.shape)}"
            )
        noise_mode = self._check_noise_mode(self.noise_mode)
        ws, features = self.encode(degraded)
        image = self.synthesize(ws, features, noise_mode)
        if not return_pyramid:
            return image
        pyramid = [
            to_rgb(features[r]) for r, to_rgb in zip(self.resolutions, self.pyramid_to_rgb, strict=True)
        ]
        return image, pyramid

    # ------------------------------------------------------------------- prior
    def load_prior(self, path: str | os.PathLike[str]) -> None:
        """Load the prior from a StyleGAN2 run's Lightning checkpoint (``torch.load(weights_only=True)``).

        Takes ``generator_ema.synthesis_network.*`` when ``prior_use_ema`` and the run had an EMA
        generator, else ``generator.synthesis_network.*``; freezes the prior unless ``prior_trainable``.

        Raises:
            WeightsFileMissing: no file at ``path``.
            CheckpointError: the file is unreadable, refused (objects other than tensors), not a
                checkpoint, holds no StyleGAN2 synthesis weights, or one of another size (the first
                mismatching key and both priors in words).
        """
        raw = str(path)
        file = Path(os.path.expandvars(raw)).expanduser()
        if not file.is_file():
            problem = "is a directory, not a file" if file.is_dir() else "does not exist"
            raise WeightsFileMissing(f"{PRIOR_KEY}={raw}: {file} {problem}. {_HOW_TO_MAKE}.")
        checkpoint = load_weights_only(
            file, what=f"{PRIOR_KEY}: the StyleGAN2 prior checkpoint", fix=f"{_HOW_TO_MAKE}."
        )
        state, prefix = self._synthesis_state(checkpoint, raw)
        self._check_fits(state, prefix, raw)
        self.synthesis.load_state_dict(state)
        self.synthesis.requires_grad_(self.prior_trainable)
        self.prior_source = raw
        self.prior_weights = prefix.split(".")[0]

    def _synthesis_state(self, checkpoint: Any, raw: str) -> tuple[dict[str, Tensor], str]:
        """The synthesis tensors of the checkpoint (keys relative to the network) and their prefix."""
        state_dict = checkpoint.get("state_dict") if isinstance(checkpoint, Mapping) else None
        if not isinstance(state_dict, Mapping):
            found = (
                f"a mapping with keys {sorted(map(str, checkpoint))[:5]}"
                if isinstance(checkpoint, Mapping)
                else f"a {type(checkpoint).__name__}"
            )
            raise CheckpointError(
                f"{PRIOR_KEY}={raw} is not a training checkpoint: it holds {found}, no 'state_dict'. "
                f"{_HOW_TO_MAKE}."
            )
        owners = ("generator_ema.", "generator.") if self.prior_use_ema else ("generator.",)
        for owner in owners:
            for attr in _SYNTHESIS_ATTRS:
                prefix = owner + attr
                state = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
                if state:
                    if not any(k.startswith("to_rgb.") for k in state):
                        raise CheckpointError(
                            f"{PRIOR_KEY}={raw} holds a StyleGAN (version 1) synthesis network ({prefix}*, "
                            "no to-RGB layer per resolution); GFP-GAN's prior is StyleGAN2. "
                            f"{_HOW_TO_MAKE}."
                        )
                    return state, prefix
        generator_keys = [k for k in state_dict if str(k).startswith("generator.")]
        found = f"generator keys such as {generator_keys[0]!r}" if generator_keys else "no generator keys"
        raise CheckpointError(
            f"{PRIOR_KEY}={raw} holds no StyleGAN2 synthesis weights (expected "
            f"generator.synthesis_network.* keys; it has {found}, a run of another model). {_HOW_TO_MAKE}."
        )

    def _check_fits(self, state: Mapping[str, Tensor], prefix: str, raw: str) -> None:
        """One CheckpointError naming the first key that does not fit and both priors in words."""
        expected = self.synthesis.state_dict()
        problem = None
        for key, tensor in expected.items():
            if key in state and tuple(state[key].shape) != tuple(tensor.shape):
                problem = (
                    f"{prefix}{key} has shape {tuple(state[key].shape)} in the file, "
                    f"expected {tuple(tensor.shape)}"
                )
                break
        if problem is None:
            missing = [k for k in expected if k not in state]
            unexpected = [k for k in state if k not in expected]
            if missing:
                first = missing[0]
                problem = (
                    f"{len(missing)} expected tensors are missing, the first {prefix}{first} "
                    f"(expected shape {tuple(expected[first].shape)})"
                )
            elif unexpected:
                first = unexpected[0]
                problem = (
                    f"{len(unexpected)} tensors are unexpected, the first {prefix}{first} "
                    f"(shape {tuple(state[first].shape)} in the file)"
                )
        if problem is None:
            return
        raise CheckpointError(
            f"{PRIOR_KEY}={raw} does not fit this GFPGANGenerator: {problem}. The file holds "
            f"{describe_prior(state)}; this model expects {describe_prior(expected)}. Set "
            "model.generator's image_size, channels, w_dim, fmap_base and fmap_max to the prior run's."
        )
