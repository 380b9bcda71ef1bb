"""FID, KID and IS over a tiny deterministic feature network, checked against NumPy/SciPy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from gan_research.errors import CheckpointError, ConfigError
from gan_research.metrics import fid as fid_module
from gan_research.metrics.fid import (
    FeatureFID,
    FeatureIS,
    FeatureKID,
    build_metrics,
    frechet_distance,
    load_or_compute_real_stats,
    metric_key,
    real_stats_path,
)

SHAPE = (3, 8, 8)


class ToyFeatures(nn.Module):
    """A fixed random projection of flattened images: known features, counted calls."""

    num_features = 16

    def __init__(self, name: str = "toy", seed: int = 0, num_classes: int = 10) -> None:
        super().__init__()
        self.name = name
        gen = torch.Generator().manual_seed(seed)
        dim = int(np.prod(SHAPE))
        self.register_buffer("proj", torch.randn(dim, self.num_features, generator=gen) / dim**0.5)
        self.register_buffer("classes", torch.randn(dim, num_classes, generator=gen))
        self.calls = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return images.flatten(1) @ self.proj

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1) @ self.classes


def _images(n: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, *SHAPE, generator=gen) * 0.5 + shift


def _numpy_fid(real: np.ndarray, fake: np.ndarray) -> float:
    mu1, mu2 = real.mean(0), fake.mean(0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _fid(net: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    metric = FeatureFID(net)
    for chunk in real.split(64):  # several updates, as in an eval loop
        metric.update(chunk, real=True)
    metric.update(fake, real=False)
    return metric.compute()


def test_fid_matches_numpy_scipy() -> None:
    net = ToyFeatures()
    real, fake = _images(300, seed=1), _images(200, seed=2, shift=0.3) * 1.2
    ours = _fid(net, real, fake)
    assert ours.dtype == torch.float64
    with torch.no_grad():
        expected = _numpy_fid(net(real).double().numpy(), net(fake).double().numpy())
    assert abs(float(ours) - expected) / expected < 1e-6


def test_fid_of_a_set_with_itself_is_zero() -> None:
    net = ToyFeatures()
    real = _images(200, seed=1)
    scale = float(net(real).var(0).sum())
    assert abs(float(_fid(net, real, real))) < 1e-9 * scale


def test_fid_grows_with_a_mean_shift() -> None:
    net = ToyFeatures()
    real = _images(200, seed=1)
    values = [float(_fid(net, real, _images(200, seed=2, shift=s))) for s in (0.0, 0.5, 1.0, 2.0)]
    assert values == sorted(values) and len(set(values)) == 4


def test_frechet_distance_handles_singular_covariances() -> None:
    # Fewer samples than dimensions: no Cholesky; the eigendecomposition path must agree
    # with the eigenvalues of S1 S2 computed directly.
    gen = np.random.default_rng(0)
    a, b = gen.normal(size=(6, 16)), gen.normal(size=(9, 16)) + 0.5
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvals(s1 @ s2).real, 0, None)).sum()
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt
    ours = frechet_distance(*(torch.from_numpy(x) for x in (a.mean(0), s1, b.mean(0), s2)))
    assert float(ours) == pytest.approx(expected, rel=1e-6)


def test_fid_keeps_real_statistics_across_reset_and_needs_samples() -> None:
    metric = FeatureFID(ToyFeatures())
    metric.update(_images(50, seed=1), real=True)
    metric.reset()
    assert int(metric.real_features_num_samples) == 50
    metric.update(_images(1, seed=2), real=False)
    with pytest.raises(ConfigError, match="1 generated"):
        metric.compute()


def test_feature_network_is_out_of_checkpoints_and_keeps_its_dtype() -> None:
    net = ToyFeatures()
    metric = FeatureFID(net)
    assert metric.state_dict() == {}
    assert list(metric.children()) == []
    metric.half()
    metric.to("cpu")
    assert net.proj.dtype == torch.float32


def test_kid_and_is_run_on_the_toy_network() -> None:
    net = ToyFeatures()
    kid = FeatureKID(net, subsets=5, subset_size=40)
    kid.update(_images(60, seed=1), real=True)
    kid.update(_images(50, seed=2, shift=0.5), real=False)
    mean, std = kid.compute()
    assert torch.isfinite(mean) and torch.isfinite(std) and mean > 0

    inception_score = FeatureIS(net, splits=2)
    inception_score.update(_images(40, seed=3))
    mean, std = inception_score.compute()
    assert torch.isfinite(mean) and mean >= 1.0


def test_kid_subset_larger_than_the_samples_is_a_clear_error() -> None:
    kid = FeatureKID(ToyFeatures(), subsets=2, subset_size=100)
    kid.update(_images(20, seed=1), real=True)
    kid.update(_images(20, seed=2), real=False)
    with pytest.raises(ConfigError, match="subset_size=100"):
        kid.compute()


def test_is_of_uniform_predictions_is_one() -> None:
    class Uniform(ToyFeatures):
        def logits(self, images: torch.Tensor) -> torch.Tensor:
            return torch.zeros(len(images), 10)

    inception_score = FeatureIS(Uniform(), splits=4)
    inception_score.update(_images(40, seed=1))
    mean, _ = inception_score.compute()
    assert float(mean) == pytest.approx(1.0, abs=1e-9)


def test_networks_without_the_interface_are_rejected() -> None:
    class NoLogits(nn.Module):
        name, num_features = "plain", 4

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1)[:, :4]

    with pytest.raises(ConfigError, match="num_features"):
        FeatureFID(nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="logits"):
        FeatureIS(NoLogits())
    with pytest.raises(ConfigError, match="splits"):
        FeatureIS(ToyFeatures(), splits=0)


def test_metric_keys_name_non_inception_networks() -> None:
    assert [metric_key(k, "inception") for k in ("fid", "is", "kid")] == ["val/fid", "val/is", "val/kid"]
    assert [metric_key(k, "digits") for k in ("fid", "is", "kid")] == [
        "val/fid_digits",
        "val/is_digits",
        "val/kid_digits",
    ]
    assert metric_key("fid", "digits", stage="test") == "test/fid_digits"
    with pytest.raises(ConfigError, match="precision"):
        metric_key("precision", "inception")
    metrics = build_metrics(ToyFeatures(name="digits"), kid_subset_size=10)
    assert {k: type(v) for k, v in metrics.items()} == {
        "val/fid_digits": FeatureFID,
        "val/kid_digits": FeatureKID,
        "val/is_digits": FeatureIS,
    }


def test_real_stats_path_keys_every_ingredient(tmp_path: Path) -> None:
    path = real_stats_path(tmp_path, "cifar10", "train", "inception", 32, 50000)
    assert path == tmp_path / "fid-real_cifar10_train_inception_32px_n50000.pt"
    other = real_stats_path(tmp_path, "data/my faces", "train", "digits", (64, 48), 1000)
    assert other.parent == tmp_path and "data-my-faces" in other.name and "64x48px" in other.name
    with pytest.raises(ConfigError, match="count"):
        real_stats_path(tmp_path, "cifar10", "train", "inception", 32, 1)


def test_real_statistics_are_computed_once_then_loaded(tmp_path: Path) -> None:
    real = _images(120, seed=1)
    fake = _images(80, seed=2, shift=0.4)
    batches = [(chunk, torch.zeros(len(chunk))) for chunk in real.split(32)]  # (images, labels)
    path = real_stats_path(tmp_path / "cache", "toyset", "train", "toy", 8, 120)

    net = ToyFeatures()
    first = FeatureFID(net)
    assert load_or_compute_real_stats(first, batches, path) is False
    assert path.is_file() and net.calls == len(batches)
    first.update(fake, real=False)

    net_again = ToyFeatures()
    second = FeatureFID(net_again)
    assert load_or_compute_real_stats(second, batches, path) is True
    assert net_again.calls == 0
    second.update(fake, real=False)
    assert int(second.real_features_num_samples) == 120
    assert float(second.compute()) == float(first.compute())
    torch.testing.assert_close(first.compute(), _fid(ToyFeatures(), real, fake))

    # Statistics of other weights under the same name are refused, not reused.
    with pytest.raises(CheckpointError, match="other weights"):
        load_or_compute_real_stats(FeatureFID(ToyFeatures(seed=1)), batches, path)
    with pytest.raises(CheckpointError, match="network"):
        load_or_compute_real_stats(FeatureFID(ToyFeatures(name="other")), batches, path)
    path.write_bytes(b"truncated")
    with pytest.raises(CheckpointError, match="delete it"):
        load_or_compute_real_stats(FeatureFID(ToyFeatures()), batches, path)


def test_only_rank_zero_contributes_cached_real_statistics(tmp_path: Path, monkeypatch) -> None:
    # compute() sums real states over processes; every rank holds the full totals.
    path = tmp_path / "stats.pt"
    load_or_compute_real_stats(FeatureFID(ToyFeatures()), [_images(10, seed=1)], path)
    monkeypatch.setattr(fid_module, "_distributed_rank", lambda: (1, 2))
    other_rank = FeatureFID(ToyFeatures())
    assert load_or_compute_real_stats(other_rank, [], path) is True
    assert int(other_rank.real_features_num_samples) == 0
    assert float(other_rank.real_features_sum.abs().sum()) == 0.0
