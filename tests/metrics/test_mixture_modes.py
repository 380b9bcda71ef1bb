"""MixtureModes and ClassHistogram on hand-made samples with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from gan_research.data.mixtures import GridMixture, RingMixture
from gan_research.errors import ConfigError
from gan_research.metrics.mixture_modes import ClassHistogram, MixtureModes


@pytest.fixture
def ring() -> RingMixture:
    return RingMixture(num_modes=8, radius=1.0, std=0.01)


def _on_modes(modes: torch.Tensor, per_mode: int, noise: float = 1e-3, seed: int = 0) -> torch.Tensor:
    """``per_mode`` points at every mode, jittered by ``noise`` (well inside 3σ)."""
    generator = torch.Generator().manual_seed(seed)
    points = modes.to(torch.float32).repeat_interleave(per_mode, dim=0)
    return points + noise * torch.randn(points.shape, generator=generator)


def _values(result: dict[str, torch.Tensor]) -> dict[str, float]:
    return {key: float(value) for key, value in result.items()}


def test_all_modes_covered(ring: RingMixture) -> None:
    metric = MixtureModes.from_mixture(ring)
    metric.update(_on_modes(ring.modes, per_mode=MixtureModes.PROTOCOL_SAMPLES // 8 + 1))
    result = _values(metric.compute())
    assert result["modes_recovered"] == 8
    assert result["high_quality"] == 100.0
    assert result["kl_uniform"] == pytest.approx(0.0, abs=1e-12)
    assert result["num_samples"] == 8 * (MixtureModes.PROTOCOL_SAMPLES // 8 + 1)


def test_collapse_onto_one_mode(ring: RingMixture) -> None:
    metric = MixtureModes(ring.modes, ring.std)
    metric.update(_on_modes(ring.modes[3:4], per_mode=2500))
    result = _values(metric.compute())
    assert result["modes_recovered"] == 1
    assert result["high_quality"] == 100.0
    assert result["kl_uniform"] == pytest.approx(math.log(8), abs=1e-12)


def test_points_off_every_mode(ring: RingMixture) -> None:
    metric = MixtureModes(ring.modes, ring.std)
    # The centre of a radius-1 ring is 1 = 100σ from every mode.
    metric.update(torch.zeros(100, 2))
    result = _values(metric.compute())
    assert result["modes_recovered"] == 0
    assert result["high_quality"] == 0.0
    assert math.isnan(result["kl_uniform"])  # no HQ sample: the histogram is undefined
    assert result["num_samples"] == 100


def test_half_on_half_off(ring: RingMixture) -> None:
    metric = MixtureModes(ring.modes, ring.std)
    on = _on_modes(ring.modes, per_mode=10)
    # 4σ radially outside each mode: just beyond the 3σ threshold.
    off = ring.modes.to(torch.float32).repeat_interleave(10, dim=0) * (1 + 4 * ring.std)
    metric.update(torch.cat([on, off]))
    result = _values(metric.compute())
    assert result["high_quality"] == pytest.approx(50.0)
    assert result["modes_recovered"] == 8
    assert result["kl_uniform"] == pytest.approx(0.0, abs=1e-12)


def test_threshold_is_inclusive_at_three_std() -> None:
    metric = MixtureModes(torch.zeros(1, 2), std=0.5)
    metric.update(torch.tensor([[1.5, 0.0], [1.5001, 0.0]]))
    assert float(metric.compute()["high_quality"]) == 50.0


def test_grid25_partial_coverage() -> None:
    grid = GridMixture()  # 25 modes on {-4,..,4}², std 0.05
    metric = MixtureModes.from_mixture(grid)
    # 10 modes with 3 points each, 5 more with 1 point each; 15 far-off points between modes.
    counts = torch.tensor([3] * 10 + [1] * 5 + [0] * 10)
    on = grid.modes.to(torch.float32).repeat_interleave(counts, dim=0)
    between = torch.full((15, 2), 1.0)  # (1, 1) is √2 from the nearest mode
    metric.update(torch.cat([on, between]))
    result = _values(metric.compute())
    assert result["modes_recovered"] == 15
    assert result["high_quality"] == pytest.approx(100 * 35 / 50)
    p = counts[counts > 0].double() / 35
    assert result["kl_uniform"] == pytest.approx(float((p * (p * 25).log()).sum()), abs=1e-12)


def test_batches_equal_one_batch(ring: RingMixture) -> None:
    generator = torch.Generator().manual_seed(1)
    # Noise of 2σ around random modes: a mix of HQ and non-HQ points.
    samples = ring.modes[torch.randint(8, (500,), generator=generator)].float()
    samples = samples + 2 * ring.std * torch.randn(500, 2, generator=generator)
    whole = MixtureModes(ring.modes, ring.std)
    whole.update(samples)
    batched = MixtureModes(ring.modes, ring.std)
    for chunk in samples.split(64):
        batched.update(chunk)
    expected, actual = whole.compute(), batched.compute()
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key
    assert 0 < float(expected["high_quality"]) < 100


def test_reset_clears_counts(ring: RingMixture) -> None:
    metric = MixtureModes(ring.modes, ring.std)
    metric.update(_on_modes(ring.modes, per_mode=2))
    metric.reset()
    metric.update(_on_modes(ring.modes[:1], per_mode=2))
    assert int(metric.compute()["modes_recovered"]) == 1


def test_mixture_modes_rejects_bad_input(ring: RingMixture) -> None:
    with pytest.raises(ConfigError, match="std"):
        MixtureModes(ring.modes, std=0.0)
    with pytest.raises(ConfigError, match="modes"):
        MixtureModes(torch.zeros(8), std=0.1)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        MixtureModes(ring.modes, ring.std).update(torch.zeros(4, 3))


def test_class_histogram_uniform() -> None:
    metric = ClassHistogram(num_classes=10)
    metric.update(torch.arange(10).repeat(7))
    result = _values(metric.compute())
    assert result == {"classes_covered": 10, "kl_to_data": pytest.approx(0.0, abs=1e-12), "num_samples": 70}


def test_class_histogram_one_class() -> None:
    metric = ClassHistogram(num_classes=10)
    metric.update(torch.full((50,), 4))
    result = _values(metric.compute())
    assert result["classes_covered"] == 1
    assert result["kl_to_data"] == pytest.approx(math.log(10), abs=1e-12)


def test_class_histogram_stacked_mnist_scale() -> None:
    # Stacked-MNIST: 1000 classes; 600 of them hit once each.
    metric = ClassHistogram(num_classes=1000)
    for chunk in torch.arange(600).split(128):
        metric.update(chunk)
    result = _values(metric.compute())
    assert result["classes_covered"] == 600
    # p_gen = 1/600 on 600 classes vs uniform 1/1000: KL = log(1000/600).
    assert result["kl_to_data"] == pytest.approx(math.log(1000 / 600), abs=1e-12)


def test_class_histogram_data_distribution_and_scores() -> None:
    data = [0.5, 0.25, 0.25]
    metric = ClassHistogram(num_classes=3, data_distribution=data)
    # Scores (N, K) are reduced by argmax; here they reproduce the data distribution exactly.
    scores = torch.eye(3)[torch.tensor([0, 0, 1, 2])]
    metric.update(scores)
    assert float(metric.compute()["kl_to_data"]) == pytest.approx(0.0, abs=1e-12)


def test_class_histogram_rejects_bad_input() -> None:
    with pytest.raises(ConfigError, match="> 0"):
        ClassHistogram(3, data_distribution=[1.0, 0.0, 1.0])
    with pytest.raises(ConfigError, match="3 entries"):
        ClassHistogram(3, data_distribution=[1.0, 1.0])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        ClassHistogram(3).update(torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="integer class indices"):
        ClassHistogram(3).update(torch.tensor([0.0, 1.0]))
