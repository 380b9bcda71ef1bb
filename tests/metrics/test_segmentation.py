"""Segmentation accuracy of semantic image synthesis (GauGAN/SPADE, Park et al. 2019, sec. 4):
the scores against hand-computed values, the segmenter's training and checkpoints, and the
evaluator end to end on a tiny label-map datamodule."""

from __future__ import annotations

import math
import pathlib
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from gan_research.data.translation import DigitsEdgesDataModule, TranslationDataModule
from gan_research.errors import CheckpointError, ConfigError
from gan_research.evaluate import check_settings
from gan_research.metrics import segmentation
from gan_research.metrics.segmentation import (
    IGNORE_INDEX,
    SegmentationAccuracy,
    Segmenter,
    SemanticSynthesisMetrics,
    confusion_matrix,
    default_segmenter_path,
    labels_from_onehot,
    load_segmenter,
    save_segmenter,
    segmentation_scores,
    train_segmenter,
)
from gan_research.utils.data_spec import DataKind

NUM_CLASSES = 4
# One colour per class (background grey, then red, green, blue shapes), noise on top.
PALETTE = torch.tensor([[-0.6, -0.6, -0.6], [0.8, -0.5, -0.5], [-0.5, 0.8, -0.5], [-0.5, -0.5, 0.8]])


def scenes(n: int, size: int, seed: int) -> tuple[Tensor, Tensor]:
    """``n`` label maps (one-hot, with an all-zero "don't care" corner) of random rectangles of
    classes 1..3 on background 0, and their images: the class colour plus Gaussian noise."""
    gen = torch.Generator().manual_seed(seed)
    centres = (torch.arange(size) + 0.5) / size
    labels = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        for c in range(1, NUM_CLASSES):
            y0, x0 = (torch.rand(2, generator=gen) * 0.6).tolist()
            h, w = (0.2 + torch.rand(2, generator=gen) * 0.35).tolist()
            rows = (centres >= y0) & (centres < y0 + h)
            cols = (centres >= x0) & (centres < x0 + w)
            labels[i][rows[:, None] & cols[None, :]] = c
    onehot = F.one_hot(labels, NUM_CLASSES).permute(0, 3, 1, 2).float()
    onehot[:, :, : size // 8, : size // 8] = 0
    images = PALETTE[labels].permute(0, 3, 1, 2) + 0.25 * torch.randn(n, 3, size, size, generator=gen)
    return onehot, images.clamp(-1, 1)


class ToyScenes(TranslationDataModule):
    """A paired label map -> image datamodule as the scenes data declare it: ``a`` one-hot,
    ``spec.num_classes == channels_a``; training pairs at ``load_size``, validation at ``image_size``.
    ``declare_labels=False`` is the same data declaring no classes (ordinary paired data)."""

    name = "toy_scenes"
    kinds = (DataKind.PAIRED,)

    def __init__(self, image_size: int = 16, load_size: int = 20, declare_labels: bool = True) -> None:
        super().__init__(
            crop_size=image_size,
            load_size=load_size,
            flip=True,
            channels_a=NUM_CLASSES,
            channels_b=3,
            batch_size=8,
            num_workers=0,
            batches_per_step=1,
            seed=0,
        )
        self.declare_labels = declare_labels

    @property
    def num_classes(self) -> int | None:
        return NUM_CLASSES if self.declare_labels else None

    def _load_splits(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        train_a, train_b = scenes(96, self.load_size, seed=1)
        val_a, val_b = scenes(24, self.crop_size, seed=2)
        return train_a, train_b, val_a, val_b


class Oracle:
    """A translator whose ``translate(a)`` is the real validation image of each label map."""

    evaluation_output = "translations"

    def __init__(self, datamodule: ToyScenes) -> None:
        self.a, self.b = datamodule.val_set.x, datamodule.val_set.b

    def translate(self, a: Tensor) -> Tensor:
        match = (a.flatten(1)[:, None] == self.a.flatten(1)[None]).all(dim=2)
        assert bool((match.sum(dim=1) == 1).all())
        return self.b[match.float().argmax(dim=1)]


class Noise:
    """A translator that ignores its label map: uniform noise in [-1, 1]."""

    evaluation_output = "translations"

    def translate(self, a: Tensor) -> Tensor:
        gen = torch.Generator().manual_seed(len(a))
        return torch.rand(len(a), 3, *a.shape[-2:], generator=gen) * 2 - 1


# ---------------------------------------------------------------------------- the scores
def test_pixel_accuracy_and_miou_match_hand_computed_values():
    # Classes 0..3; class 3 occurs in neither map; the last pixel is "don't care" (its wrong
    # prediction of 0 must count nowhere, not even as a false positive of class 0).
    target = torch.tensor([[[0, 0, 1], [1, 2, IGNORE_INDEX]]])
    pred = torch.tensor([[[0, 1, 1], [1, 2, 0]]])
    metric = SegmentationAccuracy(4)
    # Two updates, one of them as logits: the confusion matrix accumulates.
    metric.update(pred[:, :1], target[:, :1])
    metric.update(F.one_hot(pred[:, 1:], 4).permute(0, 3, 1, 2).float(), target[:, 1:])
    pixel_accuracy, miou = metric.compute()
    assert float(pixel_accuracy) == pytest.approx(4 / 5)  # 5 valid pixels, 4 right
    # IoU: class 0 = 1 / (1 + 0 + 1), class 1 = 2 / (2 + 1 + 0), class 2 = 1 / 1; class 3 is
    # left out (0/0), so the mean is over three classes.
    assert float(miou) == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert math.isnan(float(metric.per_class_iou()[3]))
    # A valid mask gives the same as the ignore label.
    masked = SegmentationAccuracy(4)
    masked.update(pred, target.clamp_min(0), valid=target >= 0)
    assert torch.equal(masked.confmat, metric.confmat)
    assert torch.equal(confusion_matrix(pred, target, 4).sum(), torch.tensor(5))
    assert segmentation_scores(pred, target, 4) == pytest.approx((float(pixel_accuracy), float(miou)))


def test_scores_are_nan_without_valid_pixels_and_reject_bad_classes():
    metric = SegmentationAccuracy(3)
    metric.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), IGNORE_INDEX))
    assert all(math.isnan(float(v)) for v in metric.compute())
    with pytest.raises(ValueError, match="target holds class 3"):
        metric.update(torch.zeros(1, 1, 1, dtype=torch.long), torch.full((1, 1, 1), 3))


def test_labels_from_onehot_marks_all_zero_pixels_as_ignored():
    a = torch.zeros(1, 3, 1, 3)
    a[0, 2, 0, 0] = 1
    a[0, 0, 0, 1] = 1  # pixel (0, 2) has no class
    labels, valid = labels_from_onehot(a)
    assert labels.dtype == torch.int64
    assert labels.tolist() == [[[2, 0, IGNORE_INDEX]]]
    assert valid.tolist() == [[[True, True, False]]]


# ---------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_gives_identical_logits(tmp_path: Path):
    torch.manual_seed(0)
    model = Segmenter(3, NUM_CLASSES, width=4).freeze()
    path = default_segmenter_path(tmp_path, "toy_scenes", 16)
    assert path == tmp_path / "segmenters" / "toy_scenes_16.pt"
    checksum = save_segmenter(model, path, 0.9, 0.8, "toy_scenes", 16, {"steps": 3})
    loaded = load_segmenter(path)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(loaded(x), model(x))
    assert (loaded.sha256, loaded.pixel_accuracy, loaded.miou) == (checksum, 0.9, 0.8)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    loaded.train()  # frozen: a parent's train() must not turn batch norm back on
    assert not loaded.training


def test_a_tampered_checkpoint_fails_its_checksum(tmp_path: Path):
    path = tmp_path / "seg.pt"
    save_segmenter(Segmenter(3, NUM_CLASSES, width=4), path, 0.9, 0.8, "toy_scenes", 16)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["state_dict"]["head.bias"] += 1
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="fails its checksum") as info:
        load_segmenter(path)
    assert str(path) in str(info.value) and "delete it" in str(info.value)


class _Payload:
    """Unpickling this creates ``marker``: the stand-in for code a planted file would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[Path]]:
        return (pathlib.Path.touch, (self.marker,))


def test_a_planted_pickle_is_refused_not_run(tmp_path: Path):
    path, marker = tmp_path / "seg.pt", tmp_path / "PWNED"
    torch.save({"format": segmentation.CHECKPOINT_FORMAT, "state_dict": _Payload(marker)}, path)
    with pytest.raises(CheckpointError) as info:
        load_segmenter(path)
    assert not marker.exists()
    assert str(path) in str(info.value) and "\n" not in str(info.value)


# ---------------------------------------------------------------------------- training
def test_train_segmenter_segments_held_out_pairs_and_is_deterministic():
    datamodule = ToyScenes()
    before = torch.random.get_rng_state()
    model, pixel_accuracy, miou = train_segmenter(datamodule, steps=48, device="cpu")
    assert torch.equal(torch.random.get_rng_state(), before)  # only a forked RNG was seeded
    # Scored on the validation pairs, which training never saw.
    assert pixel_accuracy > 0.95 and miou > 0.85
    assert not model.training
    b = datamodule.val_set.b
    assert model(b).shape == (len(b), NUM_CLASSES, 16, 16)
    assert model.feature_network()(b).shape == (len(b), model.num_features)
    # The same seed, the same weights (on CPU; cuDNN's convolution gradients may differ in the last bits).
    again, _, _ = train_segmenter(datamodule, steps=6, device="cpu")
    once, _, _ = train_segmenter(datamodule, steps=6, device="cpu")
    assert all(
        torch.equal(p, q)
        for p, q in zip(again.state_dict().values(), once.state_dict().values(), strict=True)
    )


# ---------------------------------------------------------------------------- the evaluator
@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[SemanticSynthesisMetrics, ToyScenes, Path]:
    """An evaluator prepared on the toy scenes, its segmenter trained and cached by ``prepare``."""
    data_dir = tmp_path_factory.mktemp("data")
    datamodule = ToyScenes()
    metrics = SemanticSynthesisMetrics(data_dir=str(data_dir), batch_size=10, segmenter_steps=48)
    metrics.prepare(datamodule)
    return metrics, datamodule, data_dir


def test_real_images_score_the_real_image_accuracy(prepared):
    metrics, datamodule, data_dir = prepared
    assert (data_dir / "segmenters" / "toy_scenes_16.pt").is_file()
    results = metrics.evaluate(Oracle(datamodule))
    assert results["val/seg_pixel_accuracy"] == results["val/seg_pixel_accuracy_real"] > 0.95
    assert results["val/seg_miou"] == results["val/seg_miou_real"] > 0.85
    assert results["val/l1"] == 0.0
    # auto: no domain classifier is declared, so FID uses the segmenter's features (no weights file).
    assert metrics.feature_network == "segmenter"
    assert results["val/fid_segmenter"] == pytest.approx(0.0, abs=1e-6)
    summary = metrics.summary()
    assert summary["segmenter_sha256"] == load_segmenter(summary["segmenter_path"]).sha256


def test_images_that_ignore_the_label_map_score_far_lower(prepared):
    metrics, datamodule, _ = prepared
    results = metrics.evaluate(Noise())
    assert results["val/seg_pixel_accuracy"] < results["val/seg_pixel_accuracy_real"] - 0.4
    assert results["val/seg_miou"] < results["val/seg_miou_real"] - 0.5
    assert results["val/fid_segmenter"] > 1.0
    # The constants stay on every row.
    assert results["val/seg_miou_real"] == metrics.evaluate(Oracle(datamodule))["val/seg_miou"]


def test_a_cached_segmenter_is_loaded_not_retrained(prepared, monkeypatch: pytest.MonkeyPatch):
    first, _, data_dir = prepared

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the cached segmenter was retrained")

    monkeypatch.setattr(segmentation, "train_segmenter", refuse)
    metrics = SemanticSynthesisMetrics(data_dir=str(data_dir), batch_size=10, feature_network="none")
    metrics.prepare(ToyScenes())
    assert metrics.real_scores == first.real_scores
    assert "val/fid_segmenter" not in metrics.evaluate(Noise())


def test_data_without_label_maps_is_refused():
    metrics = SemanticSynthesisMetrics(train_segmenter_if_missing=False)
    with pytest.raises(ConfigError, match=r"does not declare label maps.*num_classes equal to channels_a"):
        metrics.prepare(ToyScenes(declare_labels=False))
    # Ordinary paired data (outline -> digit) is refused the same way, before any data is read.
    with pytest.raises(ConfigError, match="does not declare label maps"):
        metrics.prepare(DigitsEdgesDataModule())


def test_settings_are_checked_like_every_evaluator_s():
    with pytest.raises(ConfigError, match=r"feature_network='sift' is invalid.*'segmenter'"):
        SemanticSynthesisMetrics(feature_network="sift")
    with pytest.raises(ConfigError, match="segmenter_steps must be a positive integer"):
        SemanticSynthesisMetrics(segmenter_steps=0)
    with pytest.raises(ConfigError, match="needs a dataset with a domain classifier"):
        SemanticSynthesisMetrics(feature_network="classifier").feature_network_for(ToyScenes().spec)
    # gan-eval checks overrides against the signature: the new settings are in it.
    check_settings(
        SemanticSynthesisMetrics,
        {"segmenter_path": None, "train_segmenter_if_missing": False, "segmenter_steps": 3},
    )
