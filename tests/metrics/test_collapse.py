"""diversity_score and CollapseDetector."""

from __future__ import annotations

import math

import pytest
import torch

from gan_research.errors import ConfigError
from gan_research.metrics.collapse import CollapseDetector, diversity_score, mean_pairwise_distance


def test_diversity_of_identical_samples_is_zero() -> None:
    real = torch.randn(64, 10, generator=torch.Generator().manual_seed(0))
    assert diversity_score(real[3].repeat(32, 1), real) == 0.0


def test_diversity_of_real_against_itself_is_one() -> None:
    real = torch.randn(64, 10, generator=torch.Generator().manual_seed(1))
    assert diversity_score(real, real) == 1.0
    assert diversity_score(real, real, max_samples=20) == 1.0  # same seeded subset for both


def test_diversity_scales_with_spread() -> None:
    real = torch.randn(50, 4, generator=torch.Generator().manual_seed(2))
    assert diversity_score(0.25 * real, real) == pytest.approx(0.25, rel=1e-12)


def test_mean_pairwise_distance_known_value() -> None:
    # Three collinear points at 0, 1, 3: distances 1, 3, 2 → mean 2 over the 6 ordered pairs.
    points = torch.tensor([[0.0], [1.0], [3.0]])
    assert mean_pairwise_distance(points) == pytest.approx(2.0, rel=1e-12)
    # Images (n, C, H, W) are flattened.
    assert mean_pairwise_distance(points.reshape(3, 1, 1, 1)) == pytest.approx(2.0, rel=1e-12)


def test_diversity_rejects_degenerate_real_set() -> None:
    with pytest.raises(ValueError, match="identical"):
        diversity_score(torch.randn(5, 2), torch.ones(5, 2))
    with pytest.raises(ValueError, match="at least 2"):
        mean_pairwise_distance(torch.ones(1, 2))


def test_detector_passes_healthy_metrics() -> None:
    detector = CollapseDetector(min_coverage=0.5, min_diversity=0.5, min_modes_fraction=0.75, num_modes=8)
    metrics = {
        "val/coverage": torch.tensor(0.9),
        "val/diversity": 1.0,
        "val/modes_recovered": torch.tensor(8),
    }
    assert detector.check(metrics) == (False, [])


def test_detector_flags_with_reasons() -> None:
    detector = CollapseDetector(min_coverage=0.5, min_diversity=0.5, min_modes_fraction=0.75, num_modes=8)
    collapsed, reasons = detector.check({"coverage": 0.1, "diversity": 0.05, "modes_recovered": 2})
    assert collapsed
    assert len(reasons) == 3
    assert "coverage=0.1" in reasons[0] and "min_coverage=0.5" in reasons[0]
    assert "diversity=0.05" in reasons[1] and "min_diversity=0.5" in reasons[1]
    assert "modes_recovered=2/8" in reasons[2] and "min_modes_fraction=0.75" in reasons[2]


def test_detector_class_coverage_nan_and_disabled_checks() -> None:
    detector = CollapseDetector(min_coverage=None, min_diversity=0.5, min_modes_fraction=0.5, num_modes=1000)
    collapsed, reasons = detector.check({"classes_covered": 990, "diversity": math.nan})
    assert collapsed
    assert reasons == ["diversity=nan < min_diversity=0.5"]


def test_detector_errors() -> None:
    with pytest.raises(ConfigError, match="num_modes"):
        CollapseDetector(min_modes_fraction=0.5)
    with pytest.raises(ConfigError, match="min_coverage"):
        CollapseDetector(min_coverage=1.5)
    with pytest.raises(KeyError, match="diversity"):
        CollapseDetector().check({"coverage": 0.9})
    with pytest.raises(KeyError, match="several"):
        CollapseDetector(min_diversity=None).check({"train/coverage": 0.9, "val/coverage": 0.9})
