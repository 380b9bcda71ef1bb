"""Restoration metrics (gan_research.metrics.restoration): every number against hand computations on
hand-made pairs, class agreement/accuracy with a stub classifier whose predictions are set here,
the degraded-input baseline (= scoring the input, computed once), the refusals, and one evaluation
of a tiny pix2pix on digits_degraded with the session's digits classifier."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from gan_research.data.restoration import DegradedDigitsDataModule
from gan_research.data.super_resolution import DigitsSuperResolutionDataModule
from gan_research.errors import ConfigError
from gan_research.metrics.restoration import RestorationMetrics, class_agreement, identity_distance
from gan_research.train import build
from gan_research.utils.data_spec import DataKind, DataSpec, Domain

SHIFT, ERROR = 0.25, 0.0625  # exact in binary floating point: the sums below are exact


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Pairs:
    """What the metrics read of a restoration datamodule: its declaration, validation pairs and
    (optionally) their classes."""

    def __init__(self, a: Tensor, b: Tensor, domain: Domain | None = None, labels: Tensor | None = None):
        self.a, self.b, self.domain, self.val_labels = a, b, domain, labels
        self.kind = DataKind.PAIRED

    @property
    def spec(self) -> DataSpec:
        c, size = self.b.shape[1], self.b.shape[-1]
        return DataSpec(
            "toy_restoration", self.kind, (c, size, size), None, c, size, self.a.shape[1], self.domain,
            image_size_a=self.a.shape[-1],
        )  # fmt: skip

    def prepare_data(self) -> None:
        pass

    def setup(self, stage: str | None = None) -> None:
        pass

    def val_dataloader(self):
        return list(zip(self.a.split(5), self.b.split(5), strict=True))


class StubClassifier(nn.Module):
    """Predictions set by pixel (0, 0): class 0 below -0.5, 1 in [-0.5, 0.5), 2 from 0.5; features:
    the first row's first four pixels."""

    name = "stub"
    num_features = 4
    num_classes = 3

    def forward(self, x: Tensor) -> Tensor:
        return x[:, 0, 0, :4].float()

    def logits(self, x: Tensor) -> Tensor:
        classes = (x[:, 0, 0, 0] >= -0.5).long() + (x[:, 0, 0, 0] >= 0.5).long()
        return nn.functional.one_hot(classes, 3).float()


class MeanAbs(nn.Module):
    """A stand-in for LPIPS (whose backbone is a weights file): mean |x - y| per image."""

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return (x - y).abs().flatten(1).mean(1)


class Module:
    """What the evaluator reads of a family: ``translate`` and ``device``; counts the calls."""

    device = torch.device("cpu")

    def __init__(self, translate) -> None:
        self.fn, self.calls = translate, 0

    def translate(self, a: Tensor) -> Tensor:
        self.calls += 1
        return self.fn(a)


STUB_DOMAIN = Domain("stub", labelled_data=lambda size: None)
CLEAN_CLASSES = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]
LABELS = torch.tensor([0, 1, 2, 0, 1, 1, 0, 1, 2, 0, 1, 2])  # pair 5: the classifier is wrong on it


def clean_images(n: int = 12, seed: int = 0) -> Tensor:
    """Clean (n, 1, 16, 16) images on the 1/8 grid in [-0.75, 0.75] (so +SHIFT stays in range);
    pixel (0, 0) sets the stub's class (CLEAN_CLASSES)."""
    g = torch.Generator().manual_seed(seed)
    b = (torch.randint(-6, 7, (n, 1, 16, 16), generator=g) / 8.0).float()
    b[:, 0, 0, 0] = torch.tensor([(-0.75, 0.0, 0.75)[c] for c in CLEAN_CLASSES[:n]])
    return b


def stub_metrics(monkeypatch, labels: Tensor | None = LABELS, **kwargs) -> tuple[RestorationMetrics, Tensor]:
    """Metrics on pairs (b + SHIFT, b), the stub as the domain classifier."""
    monkeypatch.setattr(RestorationMetrics, "_classifier_net", lambda self, size: StubClassifier())
    b = clean_images()
    metrics = RestorationMetrics(**{"feature_network": "none", "batch_size": 5, **kwargs})
    metrics.prepare(Pairs(b + SHIFT, b, domain=STUB_DOMAIN, labels=labels))
    return metrics, b


def psnr_db(difference_in_unit_range: float) -> float:
    return 10 * math.log10(1 / difference_in_unit_range**2)


def cosine_distances(f: np.ndarray, g: np.ndarray) -> np.ndarray:
    return 1 - (f * g).sum(1) / (np.linalg.norm(f, axis=1) * np.linalg.norm(g, axis=1))


# -- the per-image functions --------------------------------------------------------------------
def test_class_agreement_and_identity_distance_by_hand() -> None:
    agree = class_agreement(torch.tensor([1, 2, 3, 4]), torch.tensor([1, 0, 3, 0]))
    assert agree.tolist() == [1.0, 0.0, 1.0, 0.0] and agree.dtype == torch.float64
    scores = torch.tensor([[0.1, 0.9], [0.8, 0.2]])  # argmax 1, 0
    assert class_agreement(scores, torch.tensor([1, 1])).tolist() == [1.0, 0.0]
    f = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0], [1.0, 0.0]])
    g = torch.tensor([[2.0, 0.0], [1.0, 0.0], [1.0, 0.0], [-3.0, 0.0]])
    assert identity_distance(f, g).tolist() == pytest.approx([0.0, 1 - 1 / math.sqrt(2), 1.0, 2.0], abs=1e-12)
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        identity_distance(f, g[:3])


# -- the evaluator on hand-made pairs -----------------------------------------------------------
def test_an_exact_restoration_scores_perfectly_and_the_baseline_scores_the_input(monkeypatch) -> None:
    metrics, b = stub_metrics(monkeypatch)
    module = Module(lambda a: a - SHIFT)  # exactly b
    r = metrics.evaluate(module)
    assert r["val/l1"] == 0.0 and math.isinf(r["val/psnr"]) and r["val/ssim"] == pytest.approx(1.0, abs=1e-9)
    assert r["val/class_agreement"] == 1.0 and r["val/identity_distance"] == pytest.approx(0.0, abs=1e-12)
    assert r["val/class_accuracy"] == pytest.approx(11 / 12)  # the clean images' own accuracy
    # The degraded inputs b + 1/4: per pixel 1/4 off in [-1, 1], 1/8 in [0, 1].
    assert r["val/l1_degraded"] == pytest.approx(SHIFT, rel=1e-12)
    assert r["val/psnr_degraded"] == pytest.approx(psnr_db(SHIFT / 2), rel=1e-6)  # 18.06 dB
    assert 0 < r["val/ssim_degraded"] < 1
    # Pixel (0, 0) -0.75 -> -0.5 (class 0 -> 1), 0 -> 0.25 (stays 1), 0.75 -> 1 (stays 2).
    degraded_classes = [1, 1, 2] * 4
    agreement = np.mean(np.array(degraded_classes) == np.array(CLEAN_CLASSES))
    accuracy = np.mean(np.array(degraded_classes) == LABELS.numpy())
    assert r["val/class_agreement_degraded"] == pytest.approx(agreement) == pytest.approx(8 / 12)
    assert r["val/class_accuracy_degraded"] == pytest.approx(accuracy) == pytest.approx(7 / 12)
    f_clean, f_degraded = b[:, 0, 0, :4].double().numpy(), (b + SHIFT)[:, 0, 0, :4].double().numpy()
    expected = cosine_distances(f_degraded, f_clean).mean()
    assert expected > 0.01 and r["val/identity_distance_degraded"] == pytest.approx(expected, rel=1e-9)
    keys = {"l1", "psnr", "ssim", "class_agreement", "class_accuracy", "identity_distance"}
    assert set(r) == {f"val/{k}{s}" for k in keys for s in ("", "_degraded")}
    # Each input restored once per evaluation (3 chunks of 5 + 5 + 2), not once per metric.
    assert module.calls == 3


def test_a_known_perturbation_gives_the_known_numbers(monkeypatch) -> None:
    metrics, b = stub_metrics(monkeypatch)
    metrics.lpips = MeanAbs()  # the wiring of val/lpips, without LPIPS's weights file
    r = metrics.evaluate(Module(lambda a: a - SHIFT + ERROR))  # b + 1/16 everywhere
    assert r["val/l1"] == pytest.approx(ERROR, rel=1e-12)
    assert r["val/psnr"] == pytest.approx(psnr_db(ERROR / 2), rel=1e-6)  # 30.10 dB
    assert r["val/psnr"] == pytest.approx(20 * math.log10(32), rel=1e-6)
    assert r["val/lpips"] == pytest.approx(ERROR) and r["val/lpips_degraded"] == pytest.approx(SHIFT)
    # Pixel (0, 0) -0.75 -> -0.6875 (stays 0): every class kept; the features moved.
    assert r["val/class_agreement"] == 1.0
    expected = cosine_distances((b + ERROR)[:, 0, 0, :4].double().numpy(), b[:, 0, 0, :4].double().numpy())
    assert r["val/identity_distance"] == pytest.approx(expected.mean(), rel=1e-9)
    assert r["val/identity_distance"] < r["val/identity_distance_degraded"]


def test_the_degraded_baseline_equals_scoring_the_input_and_is_computed_once(monkeypatch) -> None:
    metrics, _ = stub_metrics(monkeypatch, feature_network="classifier")  # FID in the stub's features
    scores = []
    original = metrics._score

    def counting(restore, device):
        scores.append(restore)
        return original(restore, device)

    metrics._score = counting  # type: ignore[method-assign]
    first = metrics.evaluate(Module(lambda a: a.clone()))  # a do-nothing "restoration"
    assert "val/fid_stub" in first and len(scores) == 2
    for key in [k for k in first if not k.endswith("_degraded")]:
        assert first[key] == first[f"{key}_degraded"], key
    second = metrics.evaluate(Module(lambda a: a - SHIFT))
    assert len(scores) == 3  # the baseline was reused
    assert {k: v for k, v in second.items() if k.endswith("_degraded")} == {
        k: v for k, v in first.items() if k.endswith("_degraded")
    }
    assert second["val/fid_stub"] == pytest.approx(0.0, abs=1e-6) and first["val/fid_stub"] > 1e-3


def test_class_accuracy_needs_labels_and_preservation_needs_a_domain(monkeypatch) -> None:
    metrics, _ = stub_metrics(monkeypatch, labels=None)
    r = metrics.evaluate(Module(lambda a: a - SHIFT))
    assert "val/class_agreement" in r and "val/class_accuracy" not in r
    b = clean_images()
    plain = RestorationMetrics(feature_network="none")
    plain.prepare(Pairs(b + SHIFT, b))  # no domain: auto skips class and identity preservation
    assert plain.identity_network == "none"
    assert set(plain.evaluate(Module(lambda a: a))) == {
        f"val/{k}{s}" for k in ("l1", "psnr", "ssim") for s in ("", "_degraded")
    }
    with pytest.raises(ConfigError, match=r"identity_network=classifier .*'toy_restoration'"):
        RestorationMetrics(feature_network="none", identity_network="classifier").prepare(Pairs(b, b))
    off = RestorationMetrics(feature_network="none", identity_network="none")
    off.prepare(Pairs(b + SHIFT, b, domain=STUB_DOMAIN, labels=LABELS))
    assert "val/class_agreement" not in off.evaluate(Module(lambda a: a))


def test_refusals_name_the_setting_and_the_alternative() -> None:
    with pytest.raises(ConfigError, match=r"metrics\.perceptual_distance='ssim'"):
        RestorationMetrics(perceptual_distance="ssim")
    with pytest.raises(ConfigError, match=r"metrics\.identity_network='arcface'.*auto"):
        RestorationMetrics(identity_network="arcface")
    with pytest.raises(ConfigError, match=r"metrics=super_resolution") as info:
        RestorationMetrics(feature_network="none").prepare(DigitsSuperResolutionDataModule(batch_size=8))
    assert "(1, 8, 8) -> (1, 32, 32)" in str(info.value)
    b = clean_images()
    unpaired = Pairs(b, b)
    unpaired.kind = DataKind.UNPAIRED
    with pytest.raises(ConfigError, match=r"metrics=translation"):
        RestorationMetrics(feature_network="none").prepare(unpaired)


# -- end to end ---------------------------------------------------------------------------------
def test_pix2pix_on_digits_degraded_with_the_digits_classifier(make_cfg, seed_digits_classifier) -> None:
    cfg = make_cfg(
        "model=pix2pix",
        "dataset=digits_degraded",
        "metrics=restoration",
        "model.generator.num_downs=5",
        "model.discriminator.input_channels=2",
        "model.discriminator.n_layers=2",
        "metrics.num_samples=60",
        "metrics.train_classifier_if_missing=false",  # the session's classifier, never a new one
        "threads=1",
    )
    seed_digits_classifier(Path(cfg.paths.data_dir))
    objs = build(cfg)
    evaluator, dm = objs["evaluation"].evaluator, objs["datamodule"]
    assert isinstance(evaluator, RestorationMetrics) and isinstance(dm, DegradedDigitsDataModule)
    assert evaluator.feature_network == "classifier" and evaluator.identity_network == "classifier"
    assert evaluator.fid.feature_net is evaluator.identity_net  # one classifier, loaded once
    r = evaluator.evaluate(objs["model"])
    names = ("l1", "psnr", "ssim", "fid_digits", "class_agreement", "class_accuracy", "identity_distance")
    assert set(r) == {f"val/{k}{s}" for k in names for s in ("", "_degraded")}
    assert all(math.isfinite(v) for v in r.values())
    # A perfect restoration (a lookup of the clean digit): agreement 1, distance 0, and the
    # classifier's own accuracy on the clean validation digits, in the validation order.
    clean = dict(zip((x.numpy().tobytes() for x in evaluator.a), evaluator.b, strict=True))
    perfect = evaluator.evaluate(Module(lambda a: torch.stack([clean[x.numpy().tobytes()] for x in a])))
    assert perfect["val/class_agreement"] == 1.0 and perfect["val/identity_distance"] == pytest.approx(
        0, abs=1e-9
    )
    net = evaluator.identity_net
    own = (net.logits(evaluator.b).argmax(1) == dm.val_labels[:60]).double().mean()
    assert perfect["val/class_accuracy"] == pytest.approx(float(own)) and float(own) > 0.9
    # The degradation costs the classifier: the baseline keeps fewer classes than the clean images.
    assert perfect["val/class_accuracy_degraded"] < perfect["val/class_accuracy"]
    assert perfect["val/class_agreement_degraded"] < 1 and perfect["val/identity_distance_degraded"] > 0.01
