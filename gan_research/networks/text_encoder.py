"""A sentence encoder for text-to-image GANs and the image encoder it is trained against.

StackGAN (Zhang et al. 2017, arXiv:1612.03242, sec. 3.1 and 4) conditions on a fixed text
embedding φ_t of a caption, the char-CNN-RNN encoder of Reed et al. 2016 ("Learning Deep
Representations of Fine-Grained Visual Descriptions", arXiv:1605.05395), pretrained so that a
caption's embedding matches its image's (a joint embedding) and then frozen. Here the text side
is word-level, as AttnGAN's text encoder (Xu et al. 2018, arXiv:1711.10485, sec. 3.3: a
bidirectional LSTM over word embeddings): words → embeddings → a bidirectional GRU → the mean of
its outputs over the real words → a linear map to ``out_dim``. The joint-embedding training
(``metrics/text_encoder.py``) pairs it with :class:`ImageEncoder`, a small CNN to the same
dimension, which only serves that training.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from gan_research.errors import ConfigError
from gan_research.utils.validation import check_image_size, check_positive_int

__all__ = ["ImageEncoder", "TextEncoder"]


class TextEncoder(nn.Module):
    """Word indices (B, L) → sentence embeddings (B, ``out_dim``).

    Word embedding (``embed_dim``; ``pad_index`` embeds to zeros), a one-layer bidirectional GRU
    (``hidden`` per direction) run over each caption's real words only (packed, so the backward
    direction starts at the last word, not in the padding), the mean of its outputs over those
    words, and a linear layer. Captions are right-padded with ``pad_index`` (as
    ``Vocabulary.encode`` makes them); an all-padding caption gives the projection's bias.

    ``hparams`` are the constructor's arguments (a checkpoint rebuilds the network from them).
    """

    def __init__(
        self, vocab_size: int, embed_dim: int = 64, hidden: int = 128, out_dim: int = 128, pad_index: int = 0
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.vocab_size = check_positive_int(owner, "vocab_size", vocab_size)
        if self.vocab_size < 2:
            raise ConfigError(
                f"{owner}: vocab_size must be at least 2 (padding and a word), got {vocab_size}."
            )
        self.embed_dim = check_positive_int(owner, "embed_dim", embed_dim)
        self.hidden = check_positive_int(owner, "hidden", hidden)
        self.out_dim = check_positive_int(owner, "out_dim", out_dim)
        if isinstance(pad_index, bool) or not isinstance(pad_index, int) or not 0 <= pad_index < vocab_size:
            raise ConfigError(
                f"{owner}: pad_index must be an index below vocab_size={vocab_size}, got {pad_index!r}."
            )
        self.pad_index = pad_index
        self.hparams: dict[str, Any] = {
            "vocab_size": self.vocab_size,
            "embed_dim": self.embed_dim,
            "hidden": self.hidden,
            "out_dim": self.out_dim,
            "pad_index": self.pad_index,
        }
        self.embedding = nn.Embedding(self.vocab_size, self.embed_dim, padding_idx=pad_index)
        self.rnn = nn.GRU(self.embed_dim, self.hidden, batch_first=True, bidirectional=True)
        self.project = nn.Linear(2 * self.hidden, self.out_dim)

    def forward(self, tokens: Tensor) -> Tensor:
        if tokens.ndim != 2 or tokens.is_floating_point():
            raise ValueError(
                f"TextEncoder expects word indices (B, L), got {tokens.dtype} {tuple(tokens.shape)}"
            )
        tokens = tokens.long()
        batch, length = tokens.shape
        # Right-padded: the real words are the first `lengths` (trailing padding is not a word).
        real = tokens != self.pad_index
        positions = torch.arange(length, device=tokens.device)
        lengths = torch.where(real, positions + 1, 0).amax(dim=1) if length else tokens.new_zeros(batch)
        packed = pack_padded_sequence(
            self.embedding(tokens), lengths.clamp_min(1).cpu(), batch_first=True, enforce_sorted=False
        )
        outputs, _ = self.rnn(packed)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=length)
        mask = (positions[None, :] < lengths[:, None]).to(outputs.dtype)
        pooled = (outputs * mask[..., None]).sum(dim=1) / lengths.clamp_min(1).to(outputs.dtype)[:, None]
        return self.project(pooled)


class ImageEncoder(nn.Module):
    """Images (B, C, H, W) in [-1, 1] → embeddings (B, ``out_dim``): the image side of the joint
    embedding (Reed et al. 2016's θ(v), there GoogLeNet features; here a small CNN trained with the
    text encoder, since no ImageNet weights can be downloaded and the data are small).

    Inputs are resized to ``input_size`` (a power of two >= 8), then strided 4x4 convolutions
    (``width``, doubling, batch norm after the first, LeakyReLU 0.2, DCGAN's discriminator body)
    down to 4x4, flattened (positions matter: size and slant are spatial) and mapped linearly.
    """

    def __init__(self, channels: int = 1, out_dim: int = 128, width: int = 32, input_size: int = 32) -> None:
        super().__init__()
        owner = type(self).__name__
        if channels not in (1, 3) or isinstance(channels, bool):
            raise ConfigError(f"{owner}: channels must be 1 (grey) or 3 (RGB), got {channels!r}.")
        self.channels = int(channels)
        self.out_dim = check_positive_int(owner, "out_dim", out_dim)
        self.width = check_positive_int(owner, "width", width)
        self.input_size = check_image_size(owner, input_size, smallest=8)
        self.hparams: dict[str, Any] = {
            "channels": self.channels,
            "out_dim": self.out_dim,
            "width": self.width,
            "input_size": self.input_size,
        }
        layers: list[nn.Module] = []
        size, c_in, c_out = self.input_size, self.channels, self.width
        while size > 4:
            layers.append(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=c_in == self.channels))
            if c_in != self.channels:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            size, c_in, c_out = size // 2, c_out, c_out * 2
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c_in * 4 * 4, self.out_dim)

    def forward(self, images: Tensor) -> Tensor:
        if images.ndim != 4 or images.shape[1] != self.channels:
            raise ValueError(
                f"ImageEncoder expects images (B, {self.channels}, H, W), got {tuple(images.shape)}"
            )
        if images.shape[-2:] != (self.input_size, self.input_size):
            down = images.shape[-1] > self.input_size
            images = F.interpolate(
                images,
                size=(self.input_size, self.input_size),
                mode="bilinear",
                align_corners=False,
                antialias=down,
            )
        return self.head(self.body(images).flatten(1))
