"""GFP-GAN's Channel-Split Spatial Feature Transform (Wang et al. 2021, "Towards Real-World Blind
Face Restoration with Generative Facial Prior", arXiv:2101.04061, Sec. 3.3).

The degradation-removal U-Net's decoder features ``F_spatial`` at each resolution predict a
per-pixel, per-channel affine transform (α, β) = M(F_spatial) (eq. 3) of the pretrained StyleGAN2
decoder's features ``F_GAN`` at that resolution, and only part of the channels are transformed,
the rest passing through, "to better balance realness and fidelity" (eq. 4)::

    F_split0, F_split1 = Split(F_GAN)
    F_output = Concat[Identity(F_split0), α ⊙ F_split1 + β]

Reference: TencentARC/GFPGAN, ``gfpgan/archs/gfpganv1_arch.py``. ``GFPGANv1.__init__`` builds one
``condition_scale`` and one ``condition_shift`` net per resolution (conv3x3 -> LeakyReLU(0.2) ->
conv3x3, hidden width = the condition's channels; the scale's last bias starts at 1 and the
shift's at 0, ``bias_init_val``), and ``StyleGAN2GeneratorSFT.forward`` applies them after the
first styled conv of each resolution with ``sft_half=True`` (the released training config,
``options/train_gfpgan_v1.yml``)::

    out_same, out_sft = torch.split(out, int(out.size(1) // 2), dim=1)
    out_sft = out_sft * conditions[i - 1] + conditions[i]
    out = torch.cat([out_same, out_sft], dim=1)

i.e. the *first* ``C // 2`` channels pass through and the *second* half is modulated; with
``sft_half=False`` every channel is modulated. :class:`CSSFT` generalises the ratio: ``split`` is
the modulated fraction (0.5: the reference; 1: plain SFT). Differences from the reference:

- plain ``nn.Conv2d`` and ``nn.LeakyReLU(0.2)`` with torch's default initialisation, as the
  reference's ``gfpganv1_clean_arch.py`` (``GFPGANv1Clean``); ``gfpganv1_arch.py`` uses StyleGAN2's
  equalised-learning-rate ``EqualConv2d`` and ``ScaledLeakyReLU`` (√2 gain). The last biases start
  as there (``bias_init_val``: 1 for the scale net, 0 for the shift net), so α starts near 1 and
  β near 0;
- the reference needs no resizing: its U-Net decoder's level i has exactly the StyleGAN level's
  resolution. Here a condition map of another size is resized to the features' size (bilinear,
  half-pixel centres, antialiased when shrinking) *before* the two nets, so α and β are predicted
  at the features' full resolution rather than interpolated after the fact.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_research.errors import ConfigError
from gan_research.utils.validation import check_positive_int

__all__ = ["CSSFT"]


def _condition_net(condition_channels: int, out_channels: int, negative_slope: float) -> nn.Sequential:
    """The reference's ``condition_scale[i]`` / ``condition_shift[i]``: conv3x3 -> LeakyReLU -> conv3x3."""
    return nn.Sequential(
        nn.Conv2d(condition_channels, condition_channels, 3, padding=1),
        nn.LeakyReLU(negative_slope),
        nn.Conv2d(condition_channels, out_channels, 3, padding=1),
    )


class CSSFT(nn.Module):
    """Channel-split spatial feature transform (eq. 4): ``cat(F[:, :k], α ⊙ F[:, k:] + β)``.

    Args:
        channels: C, the channels of the modulated features.
        condition_channels: channels of the condition map (the U-Net decoder's features).
        split: the fraction of the C channels that is modulated, in (0, 1]: the last
            ``max(1, ceil(C * split))`` channels are (0.5: the reference's ``sft_half=True``, the
            first ``C // 2`` channels passing through; 1: every channel, ``sft_half=False``).
        negative_slope: of the nets' LeakyReLU (0.2 in the reference).

    Attributes:
        identity_channels: k, the leading channels passed through unchanged.
        modulated_channels: C - k, the channels α and β have.
        scale, shift: the nets predicting α and β from the condition map.
    """

    def __init__(
        self, channels: int, condition_channels: int, split: float = 0.5, negative_slope: float = 0.2
    ) -> None:
        super().__init__()
        self.channels = check_positive_int("CSSFT", "channels", channels)
        check_positive_int("CSSFT", "condition_channels", condition_channels)
        if isinstance(split, bool) or not isinstance(split, (int, float)) or not 0.0 < split <= 1.0:
            raise ConfigError(
                f"CSSFT: split must be a number in (0, 1] (the modulated fraction), got {split!r}."
            )
        # ceil: any split > 0 modulates at least one channel; the epsilon keeps a product that is
        # an integer up to rounding (100 * 0.07 = 7.000000000000001) from rounding up past it.
        self.modulated_channels = max(1, math.ceil(channels * split - 1e-9))
        self.identity_channels = channels - self.modulated_channels
        self.scale = _condition_net(condition_channels, self.modulated_channels, negative_slope)
        self.shift = _condition_net(condition_channels, self.modulated_channels, negative_slope)
        # α starts near 1 and β near 0 (the reference's bias_init_val=1 and 0), so the prior's
        # features start nearly unchanged instead of scaled towards 0 and shifted.
        with torch.no_grad():
            self.scale[-1].bias.fill_(1.0)
            self.shift[-1].bias.zero_()

    def modulation(self, condition: Tensor, size: tuple[int, int] | torch.Size) -> tuple[Tensor, Tensor]:
        """(α, β), each (B, C - k, *size), from ``condition`` resized to ``size`` if needed."""
        if tuple(condition.shape[-2:]) != tuple(size):
            shrinking = condition.shape[-2] > size[0] or condition.shape[-1] > size[1]
            condition = F.interpolate(
                condition, size=tuple(size), mode="bilinear", align_corners=False, antialias=shrinking
            )
        return self.scale(condition), self.shift(condition)

    def forward(self, features: Tensor, condition: Tensor) -> Tensor:
        """``features`` (B, C, H, W) transformed by ``condition`` (B, condition_channels, H', W')."""
        if features.ndim != 4 or features.shape[1] != self.channels:
            raise ValueError(
                f"CSSFT: expected features (B, {self.channels}, H, W), got {tuple(features.shape)}"
            )
        if condition.ndim != 4 or condition.shape[0] != features.shape[0]:
            raise ValueError(
                f"CSSFT: expected a condition (B={features.shape[0]}, C, H, W), got {tuple(condition.shape)}"
            )
        alpha, beta = self.modulation(condition, features.shape[-2:])
        same, modulated = features.split([self.identity_channels, self.modulated_channels], dim=1)
        return torch.cat([same, alpha * modulated + beta], dim=1)
