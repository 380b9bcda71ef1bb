"""FID, KID and IS over any feature network, and the on-disk cache of real statistics.

A *feature network* is an ``nn.Module`` with ``name: str``, ``num_features: int``,
``forward(images) -> (B, num_features)`` for images in [-1, 1] of shape (B, C, H, W)
and, for IS, ``logits(images) -> (B, K)``. :class:`~gan_research.metrics.inception.InceptionFeatures`
is one (name ``"inception"``); a domain classifier (e.g. ``"digits"``) is another.
The metrics are torchmetrics' own, so their states sync across DDP processes; these
subclasses only take a feature network, keep it out of checkpoints and compute in
float64. Numbers from a domain classifier are logged under their network's name
(``val/fid_digits``) so nobody mistakes them for Inception numbers (``val/fid``).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance

from gan_research.errors import CheckpointError, ConfigError, DataError
from gan_research.utils.safe_config import describe_load_error

METRIC_KINDS: tuple[str, ...] = ("fid", "kid", "is")
_REAL_STATES: tuple[str, ...] = ("real_features_sum", "real_features_cov_sum", "real_features_num_samples")
_CACHE_FORMAT = 1


def metric_key(kind: str, network_name: str, stage: str = "val") -> str:
    """The log key of a metric: ``val/fid`` for Inception, ``val/fid_digits`` otherwise."""
    if kind not in METRIC_KINDS:
        raise ConfigError(f"Unknown metric kind {kind!r}; valid kinds: {', '.join(METRIC_KINDS)}.")
    suffix = "" if network_name == "inception" else f"_{network_name}"
    return f"{stage}/{kind}{suffix}"


def check_feature_network(net: nn.Module, *, needs_logits: bool = False) -> None:
    """Fail early, naming what is missing, if ``net`` lacks the feature-network interface."""
    problems = []
    if not isinstance(getattr(net, "name", None), str):
        problems.append("a `name: str` attribute")
    if not isinstance(getattr(net, "num_features", None), int):
        problems.append("a `num_features: int` attribute")
    if needs_logits and not callable(getattr(net, "logits", None)):
        problems.append("a `logits(images)` method (the Inception Score needs class logits)")
    if problems:
        raise ConfigError(f"{type(net).__name__} is not a feature network: it lacks {'; '.join(problems)}.")


class _FeatureNetMetric(Metric):
    """Holds the feature network outside the module tree.

    Registered as a submodule, the network (91 MB for Inception, once per metric)
    would be written into every Lightning checkpoint and be required to resume, and
    ``LightningModule.train()`` would put a classifier's batch norm in training mode.
    Unregistered, it still follows the metric's device, never its dtype: a
    half-precision model must not turn the reference network into a different one.
    """

    inception: nn.Module

    def _hide_feature_network(self) -> None:
        net = self._modules.pop("inception")
        net.eval().requires_grad_(False)
        object.__setattr__(self, "inception", net)

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> nn.Module:
        this = super()._apply(fn, *args, **kwargs)
        net = self.__dict__.get("inception")
        if net is not None:
            probe = fn(torch.zeros(1, device=_device_of(net)))
            if isinstance(probe, Tensor):
                net.to(probe.device)
        return this

    @property
    def feature_net(self) -> nn.Module:
        """The feature network (torchmetrics calls its attribute ``inception``)."""
        return self.inception


def _device_of(net: nn.Module) -> torch.device:
    tensor = next(itertools.chain(net.parameters(), net.buffers()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


class FeatureFID(_FeatureNetMetric, FrechetInceptionDistance):
    """Fréchet distance between Gaussians fitted to real and generated features.

    FID (Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a
    Local Nash Equilibrium", NeurIPS 2017, eq. 6):
    ``||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2))``.

    torchmetrics' FID with a feature network: states are float64 feature sums, the
    feature outer-product sum and a count (``dist_reduce_fx="sum"``), real ones kept
    across ``reset()`` so real data is fed once. Unlike torchmetrics, the result stays
    float64 (it casts it back to the features' float32) and the trace of the matrix
    square root comes from a symmetric eigenproblem (see :func:`frechet_distance`):
    ten times faster than torchmetrics' general ``eigvals`` at 2048 dimensions.
    """

    def __init__(self, feature_net: nn.Module, reset_real_features: bool = False, **kwargs: Any) -> None:
        check_feature_network(feature_net)
        super().__init__(feature=feature_net, reset_real_features=reset_real_features, **kwargs)
        self._hide_feature_network()

    def compute(self) -> Tensor:
        """FID in float64, from the (synced) sums."""
        n_real, n_fake = int(self.real_features_num_samples), int(self.fake_features_num_samples)
        if n_real < 2 or n_fake < 2:
            raise ConfigError(
                f"FID needs at least 2 real and 2 generated samples, got {n_real} real and {n_fake} "
                "generated; feed more samples before computing it."
            )
        mu_r, cov_r = _mean_cov(self.real_features_sum, self.real_features_cov_sum, n_real)
        mu_f, cov_f = _mean_cov(self.fake_features_sum, self.fake_features_cov_sum, n_fake)
        return frechet_distance(mu_r, cov_r, mu_f, cov_f)


def _mean_cov(total: Tensor, outer_total: Tensor, n: int) -> tuple[Tensor, Tensor]:
    mean = total.double() / n
    cov = (outer_total.double() - n * torch.outer(mean, mean)) / (n - 1)
    return mean, cov


def _psd_factor(sigma1: Tensor, sigma2: Tensor) -> tuple[Tensor, Tensor]:
    """``(F, S)`` with ``F F^T`` one of the covariances and ``S`` the other."""
    # Cholesky costs a tenth of an eigendecomposition; it needs a positive definite
    # matrix, which fewer samples than feature dimensions do not give.
    for factored, other in ((sigma1, sigma2), (sigma2, sigma1)):
        lower, info = torch.linalg.cholesky_ex(factored)
        if int(info) == 0:
            return lower, other
    values, vectors = torch.linalg.eigh(sigma1)
    return vectors * values.clamp(min=0).sqrt(), sigma2


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> Tensor:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64.

    ``d^2 = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))`` (Heusel et al. 2017).
    With ``S1 = F F^T``, ``S1 S2`` has the eigenvalues of the symmetric PSD matrix
    ``F^T S2 F``, so ``Tr((S1 S2)^(1/2))`` is the sum of the square roots of real,
    non-negative eigenvalues: no complex residue as with ``sqrtm(S1 @ S2)``, even for
    singular covariances, and faster than a general eigensolver.
    """
    mu1, mu2, sigma1, sigma2 = (t.double() for t in (mu1, mu2, sigma1, sigma2))
    factor, other = _psd_factor(sigma1, sigma2)
    middle = factor.T @ other @ factor
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    return (mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt


class FeatureKID(_FeatureNetMetric, KernelInceptionDistance):
    """Kernel distance: unbiased MMD^2 with a cubic polynomial kernel over subsets.

    KID (Bińkowski et al., "Demystifying MMD GANs", ICLR 2018, eq. 4), torchmetrics'
    implementation with a feature network. Features are stored in float64 (as
    torch-fidelity computes it); ``compute()`` returns ``(mean, std)`` over
    ``subsets`` random subsets of ``subset_size`` samples of each side.
    """

    def __init__(
        self,
        feature_net: nn.Module,
        subsets: int = 100,
        subset_size: int = 1000,
        reset_real_features: bool = False,
        **kwargs: Any,
    ) -> None:
        check_feature_network(feature_net)
        with warnings.catch_warnings():
            # "will save all extracted features in buffer": known, that is what KID is.
            warnings.filterwarnings("ignore", message=".*save all extracted features.*")
            super().__init__(
                feature=feature_net,
                subsets=subsets,
                subset_size=subset_size,
                reset_real_features=reset_real_features,
                **kwargs,
            )
        self._hide_feature_network()

    def update(self, imgs: Tensor, real: bool) -> None:
        """Store the features of a batch of real or generated images in [-1, 1]."""
        features = self.inception(imgs).double()
        (self.real_features if real else self.fake_features).append(features)

    def compute(self) -> tuple[Tensor, Tensor]:
        """KID mean and standard deviation over subsets."""
        n_real, n_fake = _num_rows(self.real_features), _num_rows(self.fake_features)
        if min(n_real, n_fake) < self.subset_size:
            raise ConfigError(
                f"KID subset_size={self.subset_size} exceeds the samples fed ({n_real} real, "
                f"{n_fake} generated); lower subset_size or feed more samples."
            )
        return super().compute()


def _num_rows(state: Tensor | list[Tensor]) -> int:
    # A list state before sync, possibly one concatenated tensor after it.
    if isinstance(state, Tensor):
        return len(state)
    return sum(len(t) for t in state)


class FeatureIS(_FeatureNetMetric, InceptionScore):
    """Inception Score ``exp(E_x KL(p(y|x) || p(y)))`` from a feature network's logits.

    IS (Salimans et al., "Improved Techniques for Training GANs", NeurIPS 2016,
    sec. 4), torchmetrics' implementation over ``splits`` splits; ``compute()``
    returns ``(mean, std)`` (std is NaN for one split). Higher is better; 1 means
    every sample gets the same class distribution.
    """

    def __init__(self, feature_net: nn.Module, splits: int = 10, **kwargs: Any) -> None:
        check_feature_network(feature_net, needs_logits=True)
        if not isinstance(splits, int) or splits < 1:
            raise ConfigError(f"IS splits={splits!r}; expected an integer >= 1 (10 is the standard).")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*save all extracted features.*")
            # normalize=False: torchmetrics' IS would otherwise turn our [-1, 1] floats into bytes.
            super().__init__(feature=feature_net, splits=splits, normalize=False, **kwargs)
        self._hide_feature_network()

    def update(self, imgs: Tensor) -> None:
        """Store the class logits of a batch of generated images in [-1, 1]."""
        self.features.append(self.inception.logits(imgs).double())


def build_metrics(
    feature_net: nn.Module,
    kinds: Iterable[str] = METRIC_KINDS,
    *,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    is_splits: int = 10,
    stage: str = "val",
) -> dict[str, Metric]:
    """The requested metrics over one feature network, keyed by their log keys."""
    metrics: dict[str, Metric] = {}
    for kind in kinds:
        key = metric_key(kind, feature_net.name, stage)
        if kind == "fid":
            metrics[key] = FeatureFID(feature_net)
        elif kind == "kid":
            metrics[key] = FeatureKID(feature_net, subsets=kid_subsets, subset_size=kid_subset_size)
        else:
            metrics[key] = FeatureIS(feature_net, splits=is_splits)
    return metrics


# --- real-statistics cache -------------------------------------------------------------


def _slug(value: object) -> str:
    # Dataset names may be folder paths; keep file names portable.
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", str(value)).strip("-") or "none"


def real_stats_path(
    cache_dir: str | os.PathLike[str],
    dataset: str,
    split: str,
    network: str,
    image_size: int | tuple[int, int],
    num_samples: int,
) -> Path:
    """Cache file of FID's real statistics for one (dataset, split, network, size, count).

    For example ``<cache_dir>/fid-real_cifar10_train_inception_32px_n50000.pt``.
    """
    if not isinstance(num_samples, int) or num_samples < 2:
        raise ConfigError(f"FID real sample count {num_samples!r}: expected an integer >= 2.")
    size = "x".join(str(s) for s in image_size) if isinstance(image_size, (tuple, list)) else str(image_size)
    name = "_".join(["fid-real", _slug(dataset), _slug(split), _slug(network), f"{_slug(size)}px"])
    return Path(cache_dir) / f"{name}_n{num_samples}.pt"


def feature_network_fingerprint(net: nn.Module) -> str:
    """SHA-256 of a network's parameters and buffers: which weights produced a cache."""
    digest = hashlib.sha256()
    for key, tensor in sorted(net.state_dict().items()):
        digest.update(key.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _images_of(batch: Any) -> Tensor:
    # Datamodules yield (images, labels); plain iterables may yield images.
    if isinstance(batch, (tuple, list)):
        return batch[0]
    if isinstance(batch, Mapping):
        return batch["images"]
    return batch


def _distributed_rank() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _install_real_stats(fid_metric: FeatureFID, stats: Mapping[str, Tensor]) -> None:
    device = fid_metric.real_features_sum.device
    rank, world = _distributed_rank()
    for key in _REAL_STATES:
        value = stats[key].to(device=device, dtype=getattr(fid_metric, key).dtype)
        # compute() sums the real states over processes; each holds the full totals,
        # so all but rank 0 contribute zeros to count the real set once.
        if world > 1 and rank != 0 and fid_metric.sync_on_compute:
            value = torch.zeros_like(value)
        setattr(fid_metric, key, value)
    # torchmetrics caches compute()'s result until the next update(); states set here
    # behind its back must invalidate it.
    fid_metric._computed = None


def load_or_compute_real_stats(
    fid_metric: FeatureFID,
    real_batches: Iterable[Any],
    path: str | os.PathLike[str],
) -> bool:
    """Fill ``fid_metric``'s real statistics from ``path``, computing and saving them first if absent.

    ``real_batches`` must yield the whole real sample set (images in [-1, 1], or
    ``(images, labels)``) in every process; it is only iterated when the cache file
    does not exist. The file records the feature network's name, width and a
    fingerprint of its weights, and loading refuses a file made by other weights.
    Returns True when the statistics were loaded from the cache.

    Raises:
        CheckpointError: the cache file is unreadable or was made by another network.
    """
    path = Path(path)
    net = fid_metric.feature_net
    fingerprint = feature_network_fingerprint(net)
    if path.is_file():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # a damaged file fails in many ways (IndexError, EOFError, ...)
            # weights_only=True: a planted cache file is refused, never run.
            raise CheckpointError(
                f"FID real-statistics cache {path} is unreadable: {describe_load_error(err)}; "
                "delete it to recompute."
            ) from err
        expected = {"format": _CACHE_FORMAT, "network": net.name, "num_features": net.num_features}
        found = {k: saved.get(k) for k in expected} if isinstance(saved, dict) else {}
        if found != expected or not all(k in saved for k in _REAL_STATES):
            raise CheckpointError(
                f"FID real-statistics cache {path} holds {found or 'no statistics'}, expected {expected}; "
                "delete it to recompute."
            )
        if saved.get("fingerprint") != fingerprint:
            raise CheckpointError(
                f"FID real-statistics cache {path} was computed with other weights of feature network "
                f"{net.name!r}; its FIDs are not comparable with this network's. Delete it to recompute."
            )
        _install_real_stats(fid_metric, saved)
        return True

    for key in _REAL_STATES:
        setattr(fid_metric, key, torch.zeros_like(getattr(fid_metric, key)))
    with torch.no_grad():
        for batch in real_batches:
            fid_metric.update(_images_of(batch).to(fid_metric.device), real=True)
    if int(fid_metric.real_features_num_samples) < 2:
        raise DataError(f"FID real statistics for {path.name}: the real batches held fewer than 2 samples.")
    stats = {key: getattr(fid_metric, key).detach().cpu() for key in _REAL_STATES}
    if _distributed_rank()[0] == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        record = {
            "format": _CACHE_FORMAT,
            "network": net.name,
            "num_features": net.num_features,
            "fingerprint": fingerprint,
            **stats,
        }
        torch.save(record, tmp)
        # Atomic: a crash mid-write never leaves a truncated cache that looks valid.
        os.replace(tmp, path)
    _install_real_stats(fid_metric, stats)
    return False
