"""Segmentation accuracy of images synthesised from semantic label maps (GauGAN/SPADE).

Park et al. 2019, "Semantic Image Synthesis with Spatially-Adaptive Normalization"
(arXiv:1903.07291), sec. 4, "Performance metrics": "we run a semantic segmentation model on the
synthesized images and compare how well the predicted segmentation mask matches the ground truth
input", reporting pixel accuracy and mean intersection-over-union (mIoU) beside FID. A generator
that ignores its label map can still make realistic images (a good FID); only this metric sees
whether the image shows *what the map asked for*.

**Deviation from the paper.** The paper segments with a network pretrained per dataset (DRN-D-105
on Cityscapes, UperNet101 on ADE20K, DeepLabV2 on COCO-Stuff), whose weights this framework
cannot download. Here a small fully-convolutional :class:`Segmenter` is trained once on the
dataset's own *real* training pairs (image -> label map) and cached at
``<data_dir>/segmenters/<dataset>_<size>.pt`` with a SHA-256 of its weights, as the domain
classifier replaces Inception on digits (:mod:`gan_research.metrics.classifier`). Its numbers
are therefore comparable between runs on one dataset and segmenter (the checksum names it), not
with the paper's tables. The same segmenter's accuracy on the *real* validation images is the
upper bound a perfect generator would reach, so every evaluation also reports it
(``val/seg_pixel_accuracy_real``, ``val/seg_miou_real``): the gap is what the generator loses.

**Scores** (:class:`SegmentationAccuracy`, :func:`scores_from_confusion`). One confusion matrix is
accumulated over every valid pixel of the whole validation split (the convention of the
segmentation benchmarks' scripts, not a mean of per-image scores). Pixel accuracy = correct
pixels / valid pixels. IoU of class c = TP / (TP + FP + FN); mIoU averages it over the classes
that occur in the ground truth *or* the prediction: a class absent from both has 0/0 and is left
out, as ``np.nanmean(per_class_iu(hist))`` of DRN's ``segment.py`` (the evaluation SPADE used on
Cityscapes) and mmsegmentation's ``nanmean`` do. Counting it as 0 would penalise a perfect
segmentation of a subset of classes; counting it as 1 would reward a split that lacks them.
Pixels whose one-hot label is all zeros (``don't care``) count in neither score.

**The evaluator** :class:`SemanticSynthesisMetrics` is
:class:`~gan_research.metrics.translation.TranslationMetrics` (L1, PSNR, SSIM against the real
image, FID) plus ``val/seg_pixel_accuracy`` and ``val/seg_miou`` of the translated validation
label maps and their real-image constants. FID may use the segmenter's pooled bottleneck features
(``feature_network: segmenter``, no external weights); ``auto`` picks the domain classifier when the
data declares one, else the segmenter: label-map data need no Inception file.

The data contract: a paired translation datamodule whose ``a`` is the label map one-hot, float
(B, num_classes, H, W) with values 0/1, and ``b`` the image in [-1, 1]; its ``spec`` declares
``num_classes`` equal to ``channels_a``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric

from gan_research.errors import CheckpointError, ConfigError, DataError
from gan_research.metrics.classifier.checkpoint import json_meta, save_atomically, state_dict_sha256
from gan_research.metrics.classifier.training import _cpu_threads
from gan_research.metrics.evaluator import (
    FEATURE_NETWORKS,
    describe,
    module_device,
    no_domain_message,
    require_data_kind,
)
from gan_research.metrics.translation import TranslationMetrics
from gan_research.utils.data_spec import DataKind, DataSpec
from gan_research.utils.safe_config import load_weights_only
from gan_research.utils.validation import check_positive_int

log = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINT_FORMAT",
    "IGNORE_INDEX",
    "SEGMENTATION_FEATURE_NETWORKS",
    "SegmentationAccuracy",
    "Segmenter",
    "SegmenterFeatures",
    "SemanticSynthesisMetrics",
    "confusion_matrix",
    "default_segmenter_path",
    "evaluate_segmenter",
    "labels_from_onehot",
    "load_segmenter",
    "per_class_iou",
    "require_label_maps",
    "save_segmenter",
    "scores_from_confusion",
    "segmentation_scores",
    "train_segmenter",
]

CHECKPOINT_FORMAT = "gan_research.segmenter/1"
#: The label of an ignored ("don't care") pixel: ``F.cross_entropy``'s ``ignore_index``.
IGNORE_INDEX = -1
#: The feature networks of :class:`SemanticSynthesisMetrics`: every evaluator's plus the segmenter.
SEGMENTATION_FEATURE_NETWORKS = (*FEATURE_NETWORKS, "segmenter")
# Inference batch when segmenting many images (evaluation of the real and the held-out images).
_EVAL_BATCH = 64
# How to recreate a cached segmenter: the evaluator retrains a missing one.
_RECREATE = (
    "delete it, and the next evaluation with metrics=segmentation retrains it there "
    "(metrics.train_segmenter_if_missing=true)"
)


# ---------------------------------------------------------------------------- label maps, scores
def labels_from_onehot(a: Tensor) -> tuple[Tensor, Tensor]:
    """Label map one-hot (B, K, H, W) -> ``(labels, valid)``: class indices (B, H, W) int64, and a
    bool mask (B, H, W) of the pixels that have a class. A pixel whose one-hot is all zeros is a
    "don't care" pixel: ``valid`` False and its label :data:`IGNORE_INDEX`, so ``labels`` can be
    ``F.cross_entropy``'s target as it is."""
    if a.ndim != 4:
        raise ValueError(f"expected a one-hot label map (B, K, H, W), got shape {tuple(a.shape)}")
    # > 0.5 rather than != 0: a resized or soft one-hot still reads as its largest class.
    peak, labels = a.max(dim=1)
    valid = peak > 0.5
    return labels.masked_fill(~valid, IGNORE_INDEX), valid


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int, valid: Tensor | None = None) -> Tensor:
    """Counts (K, K) int64, rows the true class and columns the predicted one, of the pixels where
    ``valid`` (default: ``target >= 0``, i.e. not :data:`IGNORE_INDEX`).

    Args:
        pred: predicted class indices, any shape.
        target: true class indices, the same shape; negative values are ignored pixels.
        num_classes: K.
        valid: optional bool mask of the same shape; pixels where it is False are ignored.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    keep = target >= 0
    if valid is not None:
        if valid.shape != target.shape:
            raise ValueError(f"valid mask shape {tuple(valid.shape)} differs from {tuple(target.shape)}")
        keep = keep & valid.bool()
    truth, guess = target[keep].long(), pred[keep].long()
    if truth.numel() and (int(truth.max()) >= num_classes):
        raise ValueError(f"target holds class {int(truth.max())}, but there are {num_classes} classes")
    if guess.numel() and (int(guess.min()) < 0 or int(guess.max()) >= num_classes):
        raise ValueError(
            f"pred holds classes outside [0, {num_classes}): {int(guess.min())}..{int(guess.max())}"
        )
    counts = torch.bincount(truth * num_classes + guess, minlength=num_classes * num_classes)
    return counts.view(num_classes, num_classes)


def per_class_iou(confmat: Tensor) -> Tensor:
    """IoU per class (K,) float64 = TP / (TP + FP + FN); NaN for a class absent from both the
    ground truth and the prediction (its union is empty)."""
    confmat = confmat.double()
    tp = confmat.diagonal()
    union = confmat.sum(0) + confmat.sum(1) - tp
    return torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))


def scores_from_confusion(confmat: Tensor) -> tuple[Tensor, Tensor]:
    """``(pixel_accuracy, mIoU)`` float64 of a confusion matrix (see the module docstring for the
    convention: mIoU over the classes present in the ground truth or the prediction). Both are NaN
    when the matrix counts no pixel."""
    confmat = confmat.double()
    total = confmat.sum()
    if total == 0:
        nan = torch.tensor(float("nan"), dtype=torch.float64, device=confmat.device)
        return nan, nan.clone()
    pixel_accuracy = confmat.diagonal().sum() / total
    return pixel_accuracy, per_class_iou(confmat).nanmean()


def segmentation_scores(
    pred: Tensor, target: Tensor, num_classes: int, valid: Tensor | None = None
) -> tuple[float, float]:
    """``(pixel_accuracy, mIoU)`` of predicted class indices against true ones in one call
    (:func:`confusion_matrix`, then :func:`scores_from_confusion`); negative targets and pixels
    where ``valid`` is False are ignored."""
    pixel_accuracy, miou = scores_from_confusion(confusion_matrix(pred, target, num_classes, valid))
    return float(pixel_accuracy), float(miou)


class SegmentationAccuracy(Metric):
    """Pixel accuracy and mIoU of predicted label maps, from one confusion matrix.

    State: ``confmat`` (K, K) int64, rows true class, columns predicted class, synced by sum.
    ``update(preds, target, valid=None)``: ``preds`` are class indices (B, H, W) or logits
    (B, K, H, W); ``target`` class indices (B, H, W), negative where ignored; ``valid`` an optional
    bool mask. ``compute()`` -> ``(pixel_accuracy, mIoU)`` float64 (:func:`scores_from_confusion`).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    confmat: Tensor

    def __init__(self, num_classes: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_classes = check_positive_int("SegmentationAccuracy", "num_classes", num_classes)
        self.add_state(
            "confmat", default=torch.zeros(num_classes, num_classes, dtype=torch.int64), dist_reduce_fx="sum"
        )

    def update(self, preds: Tensor, target: Tensor, valid: Tensor | None = None) -> None:
        if preds.is_floating_point():
            if preds.ndim != 4 or preds.shape[1] != self.num_classes:
                raise ValueError(
                    f"float preds must be logits (B, {self.num_classes}, H, W), "
                    f"got shape {tuple(preds.shape)}"
                )
            preds = preds.argmax(dim=1)
        self.confmat += confusion_matrix(preds, target, self.num_classes, valid).to(self.confmat.device)

    def compute(self) -> tuple[Tensor, Tensor]:
        return scores_from_confusion(self.confmat)

    def per_class_iou(self) -> Tensor:
        """IoU per class (K,), NaN for classes absent from both sides."""
        return per_class_iou(self.confmat)


# ---------------------------------------------------------------------------- the network
def _double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class Segmenter(nn.Module):
    """A small U-Net (Ronneberger et al. 2015): ``levels`` 2x poolings with two 3x3 conv + batch
    norm + ReLU layers per level (widths ``width * 2**level``), bilinear upsampling with skip
    connections back to full resolution, a 1x1 head.

    ``forward(x)``: per-pixel class logits (B, num_classes, H, W) of float images in [-1, 1],
    (B, channels, H, W), any H, W (upsampling follows the skips' sizes, so odd sides work).
    ``features(x)``: the bottleneck averaged over positions (B, num_features), the feature space
    of ``val/fid_segmenter``; :meth:`feature_network` wraps it as the feature network FID takes
    (``forward`` = features), since this module's own ``forward`` gives logits. ``name``
    ("segmenter") and ``num_features`` are the feature-network attributes.

    After :meth:`freeze` (what :func:`train_segmenter` and :func:`load_segmenter` return) it stays
    in eval mode even when a parent calls ``train()``: batch-norm statistics must not change a
    metric's value.
    """

    def __init__(
        self,
        channels: int = 3,
        num_classes: int = 2,
        width: int = 16,
        levels: int = 2,
        name: str = "segmenter",
    ) -> None:
        super().__init__()
        owner = "Segmenter"
        self.channels = check_positive_int(owner, "channels", channels)
        self.num_classes = check_positive_int(owner, "num_classes", num_classes)
        if self.num_classes < 2:
            raise ConfigError(f"{owner}: num_classes must be at least 2, got {num_classes}.")
        self.width = check_positive_int(owner, "width", width)
        self.levels = check_positive_int(owner, "levels", levels)
        self.name = str(name)
        self.num_features = width * 2**levels
        self._frozen = False
        # Filled in by load_segmenter from the checkpoint: what it was trained on and how well it
        # segments the real validation images.
        self.dataset: str | None = None
        self.image_size: int | None = None
        self.pixel_accuracy: float | None = None
        self.miou: float | None = None
        self.sha256: str | None = None
        self.meta: dict[str, Any] = {}
        widths = [width * 2**i for i in range(levels + 1)]
        self.stem = _double_conv(channels, widths[0])
        self.down = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), _double_conv(widths[i], widths[i + 1])) for i in range(levels)
        )
        # up[j] merges level (levels - j) upsampled with the skip of level (levels - j - 1).
        self.up = nn.ModuleList(
            _double_conv(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(levels))
        )
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    @property
    def hparams(self) -> dict[str, Any]:
        """The constructor arguments that fix the architecture (saved in checkpoints)."""
        return {
            "channels": self.channels,
            "num_classes": self.num_classes,
            "width": self.width,
            "levels": self.levels,
        }

    @property
    def min_image_size(self) -> int:
        """The smallest side the poolings leave at least one pixel of."""
        return 2**self.levels

    def freeze(self) -> Segmenter:
        """Eval mode for good and no gradients to the weights: the state a metric needs."""
        self._frozen = True
        self.requires_grad_(False)
        return self.train(False)

    def train(self, mode: bool = True) -> Segmenter:
        return super().train(mode and not self._frozen)

    def _check(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"the segmenter expects images (B, {self.channels}, H, W), got shape {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise ValueError(f"the segmenter expects float images in [-1, 1], got {x.dtype}")
        if min(x.shape[-2:]) < self.min_image_size:
            raise ValueError(
                f"the segmenter's {self.levels} poolings need images of at least {self.min_image_size} px, "
                f"got {tuple(x.shape[-2:])}"
            )
        return x.to(self.head.weight.dtype)

    def _encode(self, x: Tensor) -> list[Tensor]:
        skips = [self.stem(self._check(x))]
        for down in self.down:
            skips.append(down(skips[-1]))
        return skips

    def forward(self, x: Tensor) -> Tensor:
        """Per-pixel class logits (B, num_classes, H, W)."""
        skips = self._encode(x)
        y = skips.pop()
        for up in self.up:
            skip = skips.pop()
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = up(torch.cat([y, skip], dim=1))
        return self.head(y)

    def features(self, x: Tensor) -> Tensor:
        """The bottleneck averaged over positions (B, num_features)."""
        return self._encode(x)[-1].mean(dim=(2, 3))

    @torch.no_grad()
    def predict(self, x: Tensor, batch_size: int = _EVAL_BATCH) -> Tensor:
        """Predicted class per pixel (B, H, W) int64 of many images, in batches, on ``x``'s device."""
        device = self.head.weight.device
        if len(x) == 0:
            return torch.zeros(0, *x.shape[-2:], dtype=torch.int64, device=x.device)
        preds = [self(chunk.to(device)).argmax(dim=1) for chunk in x.split(batch_size)]
        return torch.cat(preds).to(x.device)

    def feature_network(self) -> SegmenterFeatures:
        """This segmenter as an FID feature network (``forward`` = :meth:`features`)."""
        return SegmenterFeatures(self)


class SegmenterFeatures(nn.Module):
    """The feature network of :class:`~gan_research.metrics.fid.FeatureFID` on a segmenter:
    ``forward(x) -> segmenter.features(x)`` (B, num_features), ``name`` "segmenter" (the log key
    ``val/fid_segmenter``), ``num_features``."""

    def __init__(self, segmenter: Segmenter) -> None:
        super().__init__()
        self.segmenter = segmenter
        self.name: str = segmenter.name
        self.num_features: int = segmenter.num_features

    def forward(self, x: Tensor) -> Tensor:
        return self.segmenter.features(x)


# ---------------------------------------------------------------------------- training
def _signed_unit(x: Tensor) -> Tensor:
    """uint8 images -> float in [-1, 1]; float images as they are (already in [-1, 1])."""
    return x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x.float()


def _labels_in_chunks(maps: Tensor, num_classes: int, chunk: int = 256) -> Tensor:
    """Class indices (N, H, W) int16 of a training set's label maps: one-hot maps (N, K, H, W),
    converted in chunks (a float one-hot of a whole training set is large, 4 K bytes a pixel,
    its int16 labels take 2), or the integer class ids (N, 1, H, W) a label-map dataset holds
    (``gan_research.data.semantic``: one-hot only per batch), ids outside [0, K) ignored."""
    if not maps.is_floating_point():
        ids = maps[:, 0].to(torch.int16)
        return torch.where((ids >= 0) & (ids < num_classes), ids, torch.full_like(ids, IGNORE_INDEX))
    if maps.shape[1] > torch.iinfo(torch.int16).max:
        raise ConfigError(f"label maps with {maps.shape[1]} classes are more than the segmenter handles")
    return torch.cat([labels_from_onehot(part.float())[0].to(torch.int16) for part in maps.split(chunk)])


def _resized(images: Tensor, labels: Tensor, size: int, chunk: int = 256) -> tuple[Tensor, Tensor]:
    """Whole training pairs resized to the validation side: images bilinear (antialiased),
    labels nearest (classes must not blend)."""
    out_images, out_labels = [], []
    for img, lab in zip(images.split(chunk), labels.split(chunk), strict=True):
        out_images.append(
            F.interpolate(
                _signed_unit(img), size=(size, size), mode="bilinear", align_corners=False, antialias=True
            )
        )
        lab = F.interpolate(lab[:, None].float(), size=(size, size), mode="nearest-exact")
        out_labels.append(lab[:, 0].to(torch.int16))
    return torch.cat(out_images), torch.cat(out_labels)


def _training_batch(
    images: Tensor,
    labels: Tensor,
    small: tuple[Tensor, Tensor] | None,
    index: Tensor,
    size: int,
    flip: bool,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """Images (B, C, size, size) in [-1, 1] and labels (B, size, size) int64 of ``index``.

    Training pairs larger than ``size`` (loaded at ``load_size`` for the generator's random crops)
    give a random ``size`` crop, or with probability 1/2 the whole pair resized to ``size``
    (``small``): the validation images are whole images resized to ``size``, so the segmenter
    sees both scales. ``flip``: random horizontal mirroring of image and labels together.
    """
    n = len(index)
    height, width = images.shape[-2:]
    whole = (
        torch.rand(n, generator=generator) < 0.5 if small is not None else torch.zeros(n, dtype=torch.bool)
    )
    tops = torch.randint(0, height - size + 1, (n,), generator=generator)
    lefts = torch.randint(0, width - size + 1, (n,), generator=generator)
    batch_images, batch_labels = [], []
    for k, i in enumerate(index.tolist()):
        if whole[k]:
            assert small is not None
            batch_images.append(small[0][i])
            batch_labels.append(small[1][i])
        else:
            top, left = int(tops[k]), int(lefts[k])
            batch_images.append(_signed_unit(images[i, :, top : top + size, left : left + size]))
            batch_labels.append(labels[i, top : top + size, left : left + size])
    x, y = torch.stack(batch_images), torch.stack(batch_labels).long()
    if flip:
        # The generator is a CPU one; the pairs may live on the GPU (the data_on_device fast path).
        mirror = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
        y = torch.where(mirror[:, None, None], y.flip(-1), y)
    return x, y


def require_label_maps(spec: DataSpec, who: str = "metrics=segmentation") -> int:
    """The number of classes of ``spec``'s label maps; ConfigError unless the data is paired and its
    ``a`` side is a one-hot label map (``num_classes`` declared and equal to ``channels_a``)."""
    if spec.kind is not DataKind.PAIRED or spec.num_classes is None or spec.channels_a != spec.num_classes:
        raise ConfigError(
            f"{who} scores images synthesised from semantic label maps, but dataset {describe(spec)} "
            f"does not declare label maps (num_classes={spec.num_classes}, channels_a={spec.channels_a}): "
            "the data must be paired, with a = the label map one-hot (num_classes channels of 0/1) and "
            "its spec's num_classes equal to channels_a. Use metrics=translation for other paired data"
        )
    return int(spec.num_classes)


def _validation_pairs(datamodule: Any) -> tuple[Tensor, Tensor]:
    """All validation pairs (a, b) of ``datamodule``, in its fixed order, without moving the RNG."""
    a_chunks, b_chunks = [], []
    with torch.random.fork_rng(devices=[]):
        for batch in datamodule.val_dataloader():
            a_chunks.append(batch[0])
            b_chunks.append(batch[1])
    if not a_chunks:
        raise DataError(f"dataset '{datamodule.spec.name}' has no validation pairs to score the segmenter on")
    return torch.cat(a_chunks), torch.cat(b_chunks)


@torch.no_grad()
def evaluate_segmenter(
    model: Segmenter, a: Tensor, b: Tensor, batch_size: int = _EVAL_BATCH
) -> tuple[float, float]:
    """``(pixel_accuracy, mIoU)`` of ``model`` segmenting images ``b`` against one-hot label maps ``a``
    (in eval mode; the model's mode is restored)."""
    was_training = model.training
    model.eval()
    device = model.head.weight.device
    metric = SegmentationAccuracy(model.num_classes, sync_on_compute=False).to(device)
    for maps, images in zip(a.split(batch_size), b.split(batch_size), strict=True):
        target, valid = labels_from_onehot(maps.to(device))
        metric.update(model(_signed_unit(images.to(device))), target, valid)
    model.train(was_training)
    pixel_accuracy, miou = metric.compute()
    return float(pixel_accuracy), float(miou)


def train_segmenter(
    datamodule: Any,
    steps: int = 200,
    lr: float = 3e-3,
    seed: int = 0,
    batch_size: int = 16,
    width: int = 16,
    levels: int = 2,
    weight_decay: float = 1e-4,
    flip: bool = True,
    device: str | torch.device | None = None,
    num_threads: int | None = 1,
) -> tuple[Segmenter, float, float]:
    """Train a :class:`Segmenter` on a label-map datamodule's real training pairs (image ``b`` ->
    ``argmax(a)``); return it frozen with its ``(pixel_accuracy, mIoU)`` on the validation pairs.

    ``steps`` updates of ``batch_size`` pairs, a fixed budget whatever the dataset's size (the
    pairs in a new random order every pass), so the one-off cost of a metric stays bounded (on the
    embedded scenes, 150 batches of 16 reach 0.993 pixel accuracy and 0.976 mIoU on the held-out
    scenes, 300 reach 0.997 / 0.991). Pixels without a class are left out
    of the loss (``ignore_index``). AdamW with a one-cycle schedule (peak ``lr``); augmentation:
    random crops of the training pairs (or the whole pair at the validation scale, see
    :func:`_training_batch`) and horizontal flips (``flip``). Seeds only
    a forked RNG, so the caller's random stream is left as it was; the same seed gives the same
    weights on the same device. ``num_threads`` caps torch's CPU threads while training (restored
    after; None leaves them alone): one by default, as for the domain classifier, whose small
    convolutions gain nothing from intra-op threads on shared cores.
    """
    owner = "segmenter"
    steps = check_positive_int(owner, "steps", steps, form="key")
    batch_size = check_positive_int(owner, "batch_size", batch_size, form="key")
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not lr > 0:
        raise ConfigError(f"segmenter.lr must be a positive number, got {lr!r}")
    if num_threads is not None:
        num_threads = check_positive_int(owner, "num_threads", num_threads, form="key")
    spec: DataSpec = datamodule.spec
    num_classes = require_label_maps(spec, "the segmenter")
    size = int(spec.sample_shape[-1])
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    datamodule.prepare_data()
    datamodule.setup("fit")
    dataset = datamodule.train_set
    images, labels = dataset.b, _labels_in_chunks(dataset.x, num_classes)
    if len(images) != len(labels) or images.shape[-2:] != labels.shape[-2:]:
        raise DataError(
            f"dataset '{spec.name}': the segmenter needs aligned training pairs, got {tuple(labels.shape)} "
            f"label maps and {tuple(images.shape)} images"
        )
    n = len(images)
    if n < 2:
        raise DataError(f"dataset '{spec.name}' has {n} training pair(s); the segmenter needs at least 2")
    small = _resized(images, labels, size) if min(images.shape[-2:]) > size else None
    batch_size = min(batch_size, n)  # one batch of all the pairs rather than none
    steps_per_epoch = max(1, n // batch_size)
    val_a, val_b = _validation_pairs(datamodule)
    started = time.perf_counter()
    with _cpu_threads(num_threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Segmenter(images.shape[1], num_classes, width=width, levels=levels).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
        generator = torch.Generator().manual_seed(seed + 1)
        model.train()
        order = torch.randperm(n, generator=generator)
        for step in range(steps):
            # Passes over the data in a new random order each; the last partial batch of a pass is
            # dropped (a batch of one breaks batch norm), and the next order sees it again.
            position = step % steps_per_epoch
            if step > 0 and position == 0:
                order = torch.randperm(n, generator=generator)
            index = order[position * batch_size : (position + 1) * batch_size]
            x, y = _training_batch(images, labels, small, index, size, flip, generator)
            y = y.to(device)
            if not bool((y != IGNORE_INDEX).any()):
                scheduler.step()  # nothing to learn from an all-ignored batch (its loss is 0/0)
                continue
            loss = F.cross_entropy(model(x.to(device)), y, ignore_index=IGNORE_INDEX)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        model.freeze()
        pixel_accuracy, miou = evaluate_segmenter(model, val_a, val_b)
    log.info(
        "%s segmenter: validation pixel accuracy %.4f, mIoU %.4f on %d real pairs (%.1f s)",
        spec.name,
        pixel_accuracy,
        miou,
        len(val_a),
        time.perf_counter() - started,
    )
    return model, pixel_accuracy, miou


# ---------------------------------------------------------------------------- checkpoints
def default_segmenter_path(data_dir: str | Path, dataset: str, image_size: int) -> Path:
    """Where the evaluator caches the segmenter of ``dataset`` at ``image_size``."""
    return Path(data_dir) / "segmenters" / f"{dataset}_{image_size}.pt"


def save_segmenter(
    model: Segmenter,
    path: str | Path,
    pixel_accuracy: float,
    miou: float,
    dataset_name: str,
    image_size: int,
    meta: Mapping[str, Any] | None = None,
) -> str:
    """Write ``model`` with its architecture, dataset, image size, real validation scores and weight
    checksum; return the checksum. ``meta`` (how it was trained) must be JSON-like. Written to a
    temporary name and renamed, so a failure never leaves a half-written file where a good one was."""
    path = Path(path)
    state_dict = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    checksum = state_dict_sha256(state_dict)
    meta = json_meta(meta)
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "state_dict": state_dict,
        "hparams": model.hparams,
        "dataset": str(dataset_name),
        "num_classes": int(model.num_classes),
        "image_size": int(image_size),
        "pixel_accuracy": float(pixel_accuracy),
        "miou": float(miou),
        "sha256": checksum,
        "meta": meta,
        "torch_version": str(torch.__version__),
    }
    save_atomically(checkpoint, path)
    return checksum


def load_segmenter(path: str | Path, map_location: str | torch.device = "cpu") -> Segmenter:
    """Load a checkpoint of :func:`save_segmenter` (``torch.load(weights_only=True)``: a planted
    pickle is refused, never run), verify its checksum, return the frozen segmenter. It also
    carries ``dataset``, ``image_size``, ``pixel_accuracy``, ``miou``, ``sha256`` and ``meta``.

    Raises:
        CheckpointError: missing, unreadable, not a segmenter checkpoint, lacking keys, failing its
            checksum or not fitting :class:`Segmenter`; the message names the file and the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"segmenter checkpoint {path} does not exist; an evaluation with metrics=segmentation and "
            "metrics.train_segmenter_if_missing=true trains it there"
        )
    checkpoint = load_weights_only(
        path, what="segmenter checkpoint", fix=f"To recreate it, {_RECREATE}", map_location="cpu"
    )
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not a segmenter checkpoint (expected format {CHECKPOINT_FORMAT!r}); "
            f"to recreate it, {_RECREATE}"
        )
    required = (
        "state_dict",
        "hparams",
        "dataset",
        "num_classes",
        "image_size",
        "pixel_accuracy",
        "miou",
        "sha256",
    )
    missing = [key for key in required if key not in checkpoint]
    if missing:
        raise CheckpointError(f"segmenter checkpoint {path} lacks {missing}; to recreate it, {_RECREATE}")
    actual = state_dict_sha256(checkpoint["state_dict"])
    if actual != checkpoint["sha256"]:
        raise CheckpointError(
            f"segmenter checkpoint {path} fails its checksum (stored sha256 {checkpoint['sha256']}, "
            f"weights hash to {actual}): the file was modified or corrupted; to recreate it, {_RECREATE}"
        )
    try:
        model = Segmenter(**checkpoint["hparams"])
        model.load_state_dict(checkpoint["state_dict"])
    except (ConfigError, TypeError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"segmenter checkpoint {path} does not fit this version's Segmenter ({first}); "
            f"to recreate it, {_RECREATE}"
        ) from err
    model.dataset = str(checkpoint["dataset"])
    model.image_size = int(checkpoint["image_size"])
    model.pixel_accuracy = float(checkpoint["pixel_accuracy"])
    model.miou = float(checkpoint["miou"])
    model.sha256 = actual
    meta = checkpoint.get("meta")
    model.meta = meta if isinstance(meta, dict) else {}
    return model.to(map_location).freeze()


# ---------------------------------------------------------------------------- the evaluator
class SemanticSynthesisMetrics(TranslationMetrics):
    """The evaluator of semantic image synthesis (label map -> image; GauGAN/SPADE, pix2pix on
    label maps): the metrics of :class:`~gan_research.metrics.translation.TranslationMetrics` plus

    - ``val/seg_pixel_accuracy``, ``val/seg_miou``: the segmenter's scores on the translated
      validation label maps against those label maps (Park et al. 2019, sec. 4);
    - ``val/seg_pixel_accuracy_real``, ``val/seg_miou_real``: the same segmenter on the real
      validation images, computed once by :meth:`prepare`: the upper bound, logged on every row.

    Args:
        segmenter_path: the segmenter checkpoint (default ``<data_dir>/segmenters/<dataset>_<size>.pt``).
        train_segmenter_if_missing: train it there once (on the real training pairs) when missing.
        segmenter_steps: batches of that training (a cached segmenter is not retrained: delete it).
        feature_network: FID's feature space: ``auto`` (the domain classifier if the data declares
            one, else ``segmenter``), ``segmenter`` (its pooled bottleneck features: no external
            weights), ``classifier``, ``inception`` or ``none``.
        The others: those of :class:`~gan_research.metrics.translation.TranslationMetrics`.
    """

    data_kinds: ClassVar[tuple[DataKind, ...]] = (DataKind.PAIRED,)

    def __init__(
        self,
        num_samples: int | None = None,
        feature_network: str = "auto",
        classifier_path: str | None = None,
        train_classifier_if_missing: bool = True,
        inception_weights: str | None = None,
        data_dir: str = "data",
        batch_size: int = 64,
        segmenter_path: str | None = None,
        train_segmenter_if_missing: bool = True,
        segmenter_steps: int = 200,
    ) -> None:
        if feature_network not in SEGMENTATION_FEATURE_NETWORKS:
            raise ConfigError(
                f"metrics.feature_network={feature_network!r} is invalid; "
                f"valid: {list(SEGMENTATION_FEATURE_NETWORKS)}"
            )
        # Spelt out (not **kwargs): gan-eval checks settings against this signature. The base
        # does not know "segmenter"; it gets "none" and the choice is restored below.
        super().__init__(
            num_samples=num_samples,
            feature_network="none" if feature_network == "segmenter" else feature_network,
            classifier_path=classifier_path,
            train_classifier_if_missing=train_classifier_if_missing,
            inception_weights=inception_weights,
            data_dir=data_dir,
            batch_size=batch_size,
        )
        self.requested_feature_network = self.feature_network = feature_network
        self.segmenter_path = segmenter_path
        self.train_segmenter_if_missing = bool(train_segmenter_if_missing)
        self.segmenter_steps = check_positive_int("metrics", "segmenter_steps", segmenter_steps, form="key")
        self.segmenter: Segmenter | None = None
        self.seg: SegmentationAccuracy | None = None
        self.real_scores: dict[str, float] = {}

    def feature_network_for(self, spec: DataSpec) -> str:
        """FID's feature network on ``spec``'s data; ConfigError for data without label maps."""
        require_data_kind(
            self, spec, "Use metrics=translation for unpaired translation, metrics=default for generators"
        )
        require_label_maps(spec)
        choice = self.requested_feature_network
        if choice == "auto":
            return "classifier" if spec.domain is not None else "segmenter"
        if choice == "classifier" and spec.domain is None:
            raise ConfigError(
                no_domain_message(spec, "Use metrics.feature_network=segmenter, inception or none")
            )
        return choice

    def prepare(self, datamodule: Any) -> None:
        """As :meth:`TranslationMetrics.prepare`, plus the segmenter (loaded, or trained and cached
        once) and its scores on the real validation images."""
        already = self._built and datamodule is self.datamodule
        if not already:
            self.segmenter = None  # another datamodule: another segmenter
        super().prepare(datamodule)
        if already:
            return
        segmenter = self._load_or_train_segmenter()
        self.num_classes = segmenter.num_classes
        self.seg = SegmentationAccuracy(self.num_classes, sync_on_compute=False)
        self.labels = labels_from_onehot(self.a)
        pixel_accuracy, miou = evaluate_segmenter(segmenter, self.a, self.b, self.batch_size)
        self.real_scores = {"val/seg_pixel_accuracy_real": pixel_accuracy, "val/seg_miou_real": miou}
        log.info(
            "%s: the segmenter scores %.4f pixel accuracy, %.4f mIoU on %d real validation images",
            self.name,
            pixel_accuracy,
            miou,
            len(self.a),
        )

    def _load_or_train_segmenter(self) -> Segmenter:
        """The segmenter of the bound data (built once per datamodule; FID may have asked first)."""
        if self.segmenter is not None:
            return self.segmenter
        spec = self.spec
        size = int(spec.sample_shape[-1])
        path = Path(self.segmenter_path or default_segmenter_path(self.data_dir, spec.name, size))
        if not path.is_file() and self.train_segmenter_if_missing:
            log.info("training the %s segmenter once; it is cached at %s", spec.name, path)
            started = time.perf_counter()
            model, pixel_accuracy, miou = train_segmenter(self.datamodule, steps=self.segmenter_steps)
            meta = {"steps": self.segmenter_steps, "train_seconds": round(time.perf_counter() - started, 2)}
            save_segmenter(model, path, pixel_accuracy, miou, spec.name, size, meta)
        segmenter = load_segmenter(path)
        num_classes = require_label_maps(spec)
        if segmenter.num_classes != num_classes or segmenter.channels != spec.sample_shape[0]:
            raise CheckpointError(
                f"segmenter checkpoint {path} segments {segmenter.channels}-channel images into "
                f"{segmenter.num_classes} classes, but dataset {describe(spec)} has "
                f"{spec.sample_shape[0]}-channel images and {num_classes} classes; set "
                f"metrics.segmenter_path to this dataset's segmenter or {_RECREATE}"
            )
        if segmenter.dataset != spec.name or segmenter.image_size != size:
            log.warning(
                "segmenter %s was trained on %s at %d px; scoring %s at %d px with it",
                path,
                segmenter.dataset,
                segmenter.image_size,
                spec.name,
                size,
            )
        trained = segmenter.meta.get("steps")
        if trained is not None and trained != self.segmenter_steps:
            log.warning(
                "segmenter %s was trained for %s steps, not metrics.segmenter_steps=%d; delete it to retrain",
                path,
                trained,
                self.segmenter_steps,
            )
        self.segmenter_file = path
        self.segmenter = segmenter
        return segmenter

    def _feature_net(self, image_size: int) -> nn.Module:
        if self.feature_network == "segmenter":
            return self._load_or_train_segmenter().feature_network()
        return super()._feature_net(image_size)

    def to(self, device: torch.device | str) -> SemanticSynthesisMetrics:
        super().to(device)
        for module in (self.segmenter, self.seg):
            if module is not None:
                module.to(device)
        return self

    def summary(self) -> dict[str, Any]:
        """What ``gan-eval`` records beside the metrics, with the segmenter that scored them."""
        segmenter = self.segmenter
        extra = {} if segmenter is None else {
            "segmenter_path": str(self.segmenter_file),
            "segmenter_sha256": segmenter.sha256,
            "num_classes": segmenter.num_classes,
        }  # fmt: skip
        return {**super().summary(), **extra}

    def evaluate(self, module: Any, world_size: int = 1) -> dict[str, float]:
        """The metrics of ``module.translate`` (label map -> image): TranslationMetrics' and the
        segmentation scores of the same translations, beside the real-image constants."""
        return self.evaluate_translator(
            module.translate, getattr(module, "translate_back", None), module_device(module)
        )

    @torch.no_grad()
    def evaluate_translator(
        self,
        translate: Callable[[Tensor], Tensor],
        translate_back: Callable[[Tensor], Tensor] | None = None,
        device: torch.device | str = "cpu",
    ) -> dict[str, float]:
        """As :meth:`TranslationMetrics.evaluate_translator`, segmenting each translated validation
        input once: the same images FID and L1 see, even from a generator that samples noise."""
        if not self._built or self.segmenter is None or self.seg is None:
            raise RuntimeError("SemanticSynthesisMetrics.prepare(datamodule) must run before an evaluation")
        segmenter, seg = self.segmenter.to(device), self.seg.to(device)
        seg.reset()
        inputs = list(self.a.split(self.batch_size))
        targets = list(
            zip(self.labels[0].split(self.batch_size), self.labels[1].split(self.batch_size), strict=True)
        )
        position = 0

        def translate_and_segment(a: Tensor) -> Tensor:
            # The base also translates reconstructions (the cycle error of a family that translates
            # back); only the calls on the validation inputs, in order, are segmented.
            nonlocal position
            out = translate(a)
            if (
                position < len(inputs)
                and a.shape == inputs[position].shape
                and torch.equal(a, inputs[position].to(a.device))
            ):
                target, valid = targets[position]
                seg.update(segmenter(out.float().clamp(-1, 1)), target.to(out.device), valid.to(out.device))
                position += 1
            return out

        results = super().evaluate_translator(translate_and_segment, translate_back, device)
        if position != len(inputs):
            raise RuntimeError(f"segmented {position} of {len(inputs)} validation batches")
        pixel_accuracy, miou = seg.compute()
        results["val/seg_pixel_accuracy"] = float(pixel_accuracy)
        results["val/seg_miou"] = float(miou)
        results.update(self.real_scores)
        return results
