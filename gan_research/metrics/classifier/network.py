"""The domain classifier's network, :class:`DomainClassifier`: a small CNN that is a feature network.

``forward`` gives the penultimate features (FID/KID), ``logits`` the class scores (IS, mode
counting); inputs of another size or channel count are converted. Training, checkpoints and
the command: the other modules of :mod:`gan_research.metrics.classifier`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_research.errors import ConfigError
from gan_research.utils.images import convert_channels
from gan_research.utils.validation import check_positive_int

# Three 2x poolings: smaller inputs would pool away to nothing.
MIN_IMAGE_SIZE = 8
# Batch size for inference over many images (evaluation, mode counting).
_EVAL_BATCH = 512


def _conv_block(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    layers = [
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]
    return nn.Sequential(*layers, nn.MaxPool2d(2)) if stride == 1 else nn.Sequential(*layers)


class DomainClassifier(nn.Module):
    """Three conv blocks (width, 2*width, 4*width), a 4x4 pool, a ``num_features`` layer, a linear head.

    Feature-network interface (metrics depend on it): ``name`` (the dataset, for
    log keys such as ``val/fid_digits``), ``num_features``, ``num_classes``,
    ``image_size``, ``channels``; ``forward(x) -> (B, num_features)`` and
    ``logits(x) -> (B, num_classes)`` for float images in [-1, 1], shape (B, C, H, W).
    Inputs of another size are resized bilinearly to ``image_size``; grey inputs
    to an RGB classifier are repeated, RGB inputs to a grey one converted with
    the luma weights (as the datamodules do).

    After :meth:`freeze` (what :func:`train_classifier` and
    :func:`load_classifier` return) the network stays in eval mode even when a
    parent module calls ``train()``, like torchmetrics' ``NoTrainInceptionV3``:
    batch-norm statistics and dropout must not change a metric's value.
    """

    def __init__(
        self,
        channels: int = 1,
        image_size: int = 32,
        num_classes: int = 10,
        width: int = 16,
        num_features: int = 128,
        dropout: float = 0.3,
        name: str = "domain",
    ) -> None:
        super().__init__()
        owner = "classifier"
        if channels not in (1, 3) or isinstance(channels, bool):
            raise ConfigError(f"{owner}.channels must be 1 (grey) or 3 (RGB), got {channels!r}")
        image_size = check_positive_int(owner, "image_size", image_size, form="key")
        if image_size < MIN_IMAGE_SIZE:
            raise ConfigError(f"{owner}.image_size must be at least {MIN_IMAGE_SIZE}, got {image_size}")
        self.num_classes = check_positive_int(owner, "num_classes", num_classes, form="key")
        if self.num_classes < 2:
            raise ConfigError(f"{owner}.num_classes must be at least 2, got {num_classes}")
        self.width = check_positive_int(owner, "width", width, form="key")
        self.num_features = check_positive_int(owner, "num_features", num_features, form="key")
        if not 0.0 <= float(dropout) < 1.0:
            raise ConfigError(f"{owner}.dropout must be in [0, 1), got {dropout!r}")
        self.channels = int(channels)
        self.image_size = image_size
        self.dropout_p = float(dropout)
        self.name = str(name)
        self._frozen = False

        self.body = nn.Sequential(
            # A strided first conv (a ResNet-style stem) rather than conv + pool at full
            # resolution: a third of the CPU time per step, the same accuracy on digits.
            _conv_block(channels, width, stride=2),
            _conv_block(width, 2 * width),
            _conv_block(2 * width, 4 * width),
            # A fixed 4x4 grid keeps where strokes are (a global average would not) at any image_size.
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(4 * width * 16, num_features),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(num_features, num_classes)

    @property
    def hparams(self) -> dict[str, Any]:
        """The constructor arguments that fix the architecture (saved in checkpoints)."""
        return {
            "channels": self.channels,
            "image_size": self.image_size,
            "num_classes": self.num_classes,
            "width": self.width,
            "num_features": self.num_features,
            "dropout": self.dropout_p,
        }

    def freeze(self) -> DomainClassifier:
        """Eval mode for good and no gradients to the weights: the state a metric needs."""
        self._frozen = True
        self.requires_grad_(False)
        return self.train(False)

    def train(self, mode: bool = True) -> DomainClassifier:
        return super().train(mode and not self._frozen)

    def prepare(self, x: Tensor) -> Tensor:
        """Bring float images in [-1, 1] to this network's channels, size and dtype."""
        if x.ndim != 4:
            raise ValueError(
                f"{self.name} classifier expects images (B, C, H, W), got shape {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            # torchmetrics' image metrics default to uint8 input; silently scaling it would be wrong.
            raise ValueError(
                f"{self.name} classifier expects float images in [-1, 1], got {x.dtype}; "
                "convert uint8 images with x / 127.5 - 1"
            )
        x = x.to(self.head.weight.dtype)
        if x.shape[1] != self.channels:
            x = convert_channels(x, self.channels)
        if x.shape[-2:] != (self.image_size, self.image_size):
            downscale = x.shape[-2] > self.image_size or x.shape[-1] > self.image_size
            x = F.interpolate(
                x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False,
                antialias=downscale,
            )  # fmt: skip
        return x

    def forward(self, x: Tensor) -> Tensor:
        """Penultimate features (B, num_features) of float images in [-1, 1]."""
        return self.body(self.prepare(x))

    def logits(self, x: Tensor) -> Tensor:
        """Class scores (B, num_classes) of float images in [-1, 1]."""
        return self.head(self.dropout(self(x)))

    @torch.no_grad()
    def predict(self, x: Tensor, batch_size: int = _EVAL_BATCH) -> Tensor:
        """Predicted class (B,) of many images, in batches (switch to eval mode first)."""
        device = self.head.weight.device
        if len(x) == 0:
            return torch.zeros(0, dtype=torch.int64, device=x.device)
        preds = [self.logits(chunk.to(device)).argmax(dim=1) for chunk in x.split(batch_size)]
        return torch.cat(preds).to(x.device)
