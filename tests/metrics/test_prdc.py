"""Precision/recall and density/coverage against hand-made sets and a brute-force numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gan_research.errors import ConfigError
from gan_research.metrics import prdc
from gan_research.metrics.prdc import DensityCoverage, PrecisionRecall, density_coverage, precision_recall


def _reference(real: np.ndarray, fake: np.ndarray, k_pr: int, k_dc: int) -> dict[str, float]:
    """Literal transcription of the formulas: full distance matrices, no chunking, no torch."""
    real_real = np.sqrt(((real[:, None, :] - real[None, :, :]) ** 2).sum(-1))
    fake_fake = np.sqrt(((fake[:, None, :] - fake[None, :, :]) ** 2).sum(-1))
    real_fake = np.sqrt(((real[:, None, :] - fake[None, :, :]) ** 2).sum(-1))  # [i, j] = ‖X_i − Y_j‖

    def radii(distances: np.ndarray, k: int) -> np.ndarray:
        return np.sort(distances, axis=1)[:, k]  # index 0 is the point itself

    real_pr, fake_pr, real_dc = radii(real_real, k_pr), radii(fake_fake, k_pr), radii(real_real, k_dc)
    # Kynkäänniemi et al. 2019, Eq. (1)-(2): closed balls.
    precision = (real_fake <= real_pr[:, None]).any(axis=0).mean()
    recall = (real_fake <= fake_pr[None, :]).any(axis=1).mean()
    # Naeem et al. 2020, Eq. (3)-(4): open balls, as in their reference code.
    inside = real_fake < real_dc[:, None]
    density = inside.sum() / (k_dc * len(fake))
    coverage = inside.any(axis=1).mean()
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


def _all(real: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
    result = {**precision_recall(real, fake, k=3), **density_coverage(real, fake, k=5)}
    return {key: float(value) for key, value in result.items()}


def test_identical_sets() -> None:
    real = torch.randn(200, 8, generator=torch.Generator().manual_seed(0))
    result = _all(real, real.clone())
    assert result["precision"] == 1.0
    assert result["recall"] == 1.0
    assert result["coverage"] == 1.0
    # Open balls: X_i's ball holds itself and its k−1 nearer neighbours, so density is exactly 1.
    assert result["density"] == pytest.approx(1.0, abs=1e-12)


def test_disjoint_sets() -> None:
    generator = torch.Generator().manual_seed(1)
    real = torch.randn(100, 4, generator=generator)
    fake = torch.randn(80, 4, generator=generator) + 100.0
    assert _all(real, fake) == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_fake_collapsed_onto_one_real_point() -> None:
    real = torch.randn(100, 4, generator=torch.Generator().manual_seed(2))
    fake = real[7].repeat(50, 1)
    result = _all(real, fake)
    assert result["precision"] == 1.0  # every fake sample is realistic...
    # ...but only the real points whose k-NN ball contains real[7] are covered/recalled.
    # Fake k-NN radii are 0, so at most real[7] itself lies in a fake ball.
    assert result["recall"] <= 1 / 100
    assert result["coverage"] <= 0.1


@pytest.mark.parametrize("chunk_elements", [2**24, 150])
def test_matches_brute_force_numpy(monkeypatch: pytest.MonkeyPatch, chunk_elements: int) -> None:
    # Small blocks (150 distances) force many column chunks, including a ragged last one.
    monkeypatch.setattr(prdc, "_CHUNK_ELEMENTS", chunk_elements)
    rng = np.random.default_rng(3)
    real = rng.normal(size=(120, 5))
    fake = 1.3 * rng.normal(size=(90, 5)) + 0.4
    expected = _reference(real, fake, k_pr=3, k_dc=5)
    actual = _all(torch.from_numpy(real), torch.from_numpy(fake))
    assert 0 < expected["precision"] < 1 and 0 < expected["recall"] < 1 and 0 < expected["coverage"] < 1
    for key, value in expected.items():
        assert actual[key] == pytest.approx(value, abs=1e-12), key


def test_metrics_accumulate_batches_like_the_functions() -> None:
    generator = torch.Generator().manual_seed(4)
    real = torch.randn(150, 6, generator=generator)
    fake = torch.randn(110, 6, generator=generator) * 0.8
    pr, dc = PrecisionRecall(), DensityCoverage()
    for metric in (pr, dc):
        for chunk in real.split(40):
            metric.update(chunk, real=True)
        for chunk in fake.split(33):
            metric.update(chunk, real=False)
    assert {key: float(v) for key, v in {**pr.compute(), **dc.compute()}.items()} == _all(real, fake)


def test_reset_real_features_flag() -> None:
    generator = torch.Generator().manual_seed(5)
    real, fake = torch.randn(60, 3, generator=generator), torch.randn(60, 3, generator=generator)

    keep = DensityCoverage(reset_real_features=False)
    keep.update(real, real=True)
    keep.update(fake, real=False)
    first = keep.compute()
    keep.reset()
    assert len(keep.fake_features) == 0
    keep.update(fake, real=False)  # real features survived the reset
    assert torch.equal(keep.compute()["coverage"], first["coverage"])

    drop = DensityCoverage()
    drop.update(real, real=True)
    drop.update(fake, real=False)
    drop.reset()
    drop.update(fake, real=False)
    with pytest.raises(ValueError, match="no real features"):
        drop.compute()


def test_max_samples_caps_each_set() -> None:
    generator = torch.Generator().manual_seed(6)
    metric = PrecisionRecall(max_samples=50)
    metric.update(torch.randn(200, 3, generator=generator), real=True)
    metric.update(torch.randn(120, 3, generator=generator), real=False)
    real, fake = metric._feature_sets()
    assert (len(real), len(fake)) == (50, 50)
    assert torch.equal(metric.compute()["precision"], metric.compute()["precision"])  # seeded subset


def test_rejects_bad_input() -> None:
    with pytest.raises(ConfigError, match="k must be"):
        PrecisionRecall(k=0)
    with pytest.raises(ConfigError, match="max_samples"):
        DensityCoverage(max_samples=5)
    with pytest.raises(TypeError, match="real must be a bool"):
        PrecisionRecall().update(torch.zeros(4, 2), real=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="more than 3 samples"):
        precision_recall(torch.randn(3, 2), torch.randn(10, 2))
    with pytest.raises(ValueError, match="num_features"):
        density_coverage(torch.randn(10, 2), torch.randn(10))
    metric = DensityCoverage()
    metric.update(torch.randn(10, 2), real=True)
    with pytest.raises(ValueError, match="3 dimensions, earlier batches had 2"):
        metric.update(torch.randn(10, 3), real=False)
