"""k-NN manifold metrics in a feature space: precision/recall and density/coverage.

Both pairs estimate the real and generated manifolds as unions of k-nearest-neighbour balls.
With real features X_1..X_N, fake features Y_1..Y_M and NND_k(Z) the distance from Z to its
k-th nearest neighbour within its own set (Z itself excluded):

Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for Assessing Generative Models",
Eq. (1)-(2), closed balls (``≤``) as in the paper and the NVlabs reference code, default k = 3::

    precision = (1/M) Σ_j 1[∃ i : ‖Y_j − X_i‖ ≤ NND_k(X_i)]
    recall    = (1/N) Σ_i 1[∃ j : ‖X_i − Y_j‖ ≤ NND_k(Y_j)]

Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for Generative Models", Eq. (3)-(4),
open balls (``<``) as in the authors' ``prdc`` reference code, default k = 5::

    density  = 1/(kM) Σ_j Σ_i 1[‖Y_j − X_i‖ < NND_k(X_i)]
    coverage = (1/N) Σ_i 1[∃ j : ‖Y_j − X_i‖ < NND_k(X_i)]

The two conventions differ only on exact ties (probability zero for continuous features); the
open ball makes density exactly 1 when the fake set equals the real set (each X_i's ball holds
itself and its k − 1 nearer neighbours).

Distances are Euclidean, in float64, computed block by block (``_CHUNK_ELEMENTS`` distances per
block) so memory stays bounded for tens of thousands of samples.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from gan_research.errors import ConfigError
from gan_research.utils.validation import check_positive_int

# Distances held in memory at once per block (float64: 8 bytes each → 128 MiB).
_CHUNK_ELEMENTS = 2**24


def _check_features(name: str, features: Tensor, k: int) -> None:
    if len(features) <= k:
        # NND_k needs k neighbours besides the point itself.
        raise ValueError(f"{name}: k-NN radii with k={k} need more than {k} samples, got {len(features)}")


def _centre_blocks(queries: Tensor, centres: Tensor) -> Iterator[tuple[slice, Tensor, Tensor]]:
    """Yield (centre slice, NND_k-ready centre-to-centre block, query-to-centre block) per block of centres.

    Blocks run over *columns* (ball centres): each block gives the full distance columns from
    every centre and every query to the block's centres, so the k-NN radius of a centre and the
    query distances compared against it come out of the same ``cdist`` orientation. When the
    queries are the centres (fake == real), both blocks are the identical computation and the
    comparisons are exact instead of off by rounding.
    """
    width = max(1, _CHUNK_ELEMENTS // max(len(queries), len(centres)))
    for start in range(0, len(centres), width):
        block = slice(start, min(start + width, len(centres)))
        yield block, torch.cdist(centres, centres[block]), torch.cdist(queries, centres[block])


def _radii(centre_distances: Tensor, k: int) -> Tensor:
    """NND_k of each column's centre: the (k+1)-th smallest distance, the smallest being to itself."""
    return centre_distances.kthvalue(k + 1, dim=0).values


def _as_float64(name: str, features: Tensor) -> Tensor:
    """(n, ...) features as a (n, d) float64 matrix, trailing dims flattened."""
    if features.ndim < 2:
        raise ValueError(f"{name} must be a (num_samples, num_features) tensor, got {tuple(features.shape)}")
    return features.detach().flatten(start_dim=1).to(torch.float64)


def precision_recall(real_features: Tensor, fake_features: Tensor, k: int = 3) -> dict[str, Tensor]:
    """Improved precision and recall (Kynkäänniemi et al. 2019, Eq. 1-2) of two (n, d) feature sets.

    Returns float64 0-d tensors ``precision`` (fraction of fake samples inside at least one real
    k-NN ball) and ``recall`` (fraction of real samples inside at least one fake k-NN ball).
    """
    real, fake = _as_float64("real_features", real_features), _as_float64("fake_features", fake_features)
    _check_features("real_features", real, k)
    _check_features("fake_features", fake, k)
    return {"precision": _fraction_in_manifold(fake, real, k), "recall": _fraction_in_manifold(real, fake, k)}


def _fraction_in_manifold(queries: Tensor, centres: Tensor, k: int) -> Tensor:
    """(1/|Q|) Σ_q 1[∃ c : ‖q − c‖ ≤ NND_k(c)]: the f(φ, Φ) indicator of Kynkäänniemi et al. Eq. (1)."""
    inside = torch.zeros(len(queries), dtype=torch.bool, device=queries.device)
    for _, centre_distances, query_distances in _centre_blocks(queries, centres):
        inside |= (query_distances <= _radii(centre_distances, k)[None, :]).any(dim=1)
    return inside.to(torch.float64).mean()


def density_coverage(real_features: Tensor, fake_features: Tensor, k: int = 5) -> dict[str, Tensor]:
    """Density and coverage (Naeem et al. 2020, Eq. 3-4) of two (n, d) feature sets.

    Returns float64 0-d tensors ``density`` (mean number of real k-NN balls holding a fake sample,
    divided by k; ≈ 1 for matching distributions, unbounded above) and ``coverage`` (fraction of
    real samples whose k-NN ball holds at least one fake sample).
    """
    real, fake = _as_float64("real_features", real_features), _as_float64("fake_features", fake_features)
    _check_features("real_features", real, k)
    if len(fake) == 0:
        raise ValueError("fake_features must hold at least one sample")
    in_balls = torch.zeros((), dtype=torch.float64, device=real.device)
    covered = torch.zeros(len(real), dtype=torch.bool, device=real.device)
    for block, centre_distances, fake_distances in _centre_blocks(fake, real):
        inside = fake_distances < _radii(centre_distances, k)[None, :]
        in_balls += inside.sum()
        covered[block] = inside.any(dim=0)
    return {"density": in_balls / (k * len(fake)), "coverage": covered.to(torch.float64).mean()}


class _KNNManifoldMetric(Metric):
    """Real/fake feature lists (``cat``-reduced) shared by the two k-NN manifold metrics.

    ``update(features, real)`` appends a (n, d) batch to the real or the fake set; across DDP
    processes the sets are gathered, so ``compute()`` sees every sample. With
    ``reset_real_features=False`` the real features survive ``reset()`` (as in torchmetrics'
    FID), so a fixed evaluation set is embedded once per run. ``max_samples`` caps each set at
    compute time with a seeded random subset (the same on every process), bounding the O(n²)
    cost. Features are stored in the metric's dtype, float32 by default (``set_dtype`` changes it).

    Use ``update()`` + ``compute()``; ``forward()`` would compute on a single batch, which needs
    both real and fake features in it.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    real_features: list[Tensor]
    fake_features: list[Tensor]
    num_real: Tensor
    num_fake: Tensor

    def __init__(
        self,
        k: int,
        reset_real_features: bool = True,
        max_samples: int | None = None,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_positive_int("", "k", k, form="key")
        if not isinstance(reset_real_features, bool):
            raise ConfigError(f"reset_real_features must be a bool, got {reset_real_features!r}")
        if max_samples is not None and (
            isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples <= k
        ):
            raise ConfigError(f"max_samples must be None or an integer > k={k}, got {max_samples!r}")
        self.k = k
        self.reset_real_features = reset_real_features
        self.max_samples = max_samples
        self.seed = seed
        # Rows are stored flattened to 1-D, with their count in a sum-reduced state: a process
        # that saw no sample of a set contributes torchmetrics' 1-D empty placeholder to the
        # gather, which only matches 1-D states (a (n, d) state would crash the gather).
        self.add_state("real_features", [], dist_reduce_fx="cat")
        self.add_state("fake_features", [], dist_reduce_fx="cat")
        self.add_state("num_real", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("num_fake", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        # Flattening loses d, so check it here: real and fake batches must share one feature space.
        self._feature_dim: int | None = None

    def update(self, features: Tensor, real: bool) -> None:
        """Append a (n, d) feature batch to one set (trailing dims flattened; n = 0 is a no-op)."""
        if not isinstance(real, bool):
            raise TypeError(f"real must be a bool, got {real!r}")
        if features.ndim < 2:
            raise ValueError(
                f"features must be a (num_samples, ...) tensor, got shape {tuple(features.shape)}"
            )
        if len(features) == 0:
            return  # e.g. an empty last shard under DDP: nothing to add
        # Stored in the metric's dtype (float32 unless set_dtype() changes it): torchmetrics gives a
        # process without samples an empty placeholder of that dtype, and the gather needs one
        # dtype on every process. Distances are computed in float64 regardless.
        flat = features.detach().reshape(-1).to(self.dtype)
        dim = flat.numel() // len(features)
        if self._feature_dim is not None and dim != self._feature_dim:
            raise ValueError(f"features have {dim} dimensions, earlier batches had {self._feature_dim}")
        self._feature_dim = dim
        if real:
            self.real_features.append(flat)
            self.num_real += len(features)
        else:
            self.fake_features.append(flat)
            self.num_fake += len(features)

    def reset(self) -> None:
        if self.reset_real_features:
            super().reset()
            self._feature_dim = None
            return
        # Metric.reset() clears list states in place, so keep a copy of the list, not a reference.
        kept = list(self.real_features) if isinstance(self.real_features, list) else [self.real_features]
        num_real = self.num_real.clone()
        super().reset()
        self.real_features, self.num_real = kept, num_real

    def _feature_sets(self) -> tuple[Tensor, Tensor]:
        """The concatenated (synced) real and fake sets as (n, d) tensors, capped at ``max_samples``."""
        sets = []
        for kind, state, count in (
            ("real", self.real_features, int(self.num_real)),
            ("fake", self.fake_features, int(self.num_fake)),
        ):
            if count == 0:
                raise ValueError(f"{type(self).__name__}: no {kind} features; call update(features, real)")
            flat = dim_zero_cat(state)
            if flat.numel() % count:
                raise ValueError(f"{kind} feature batches have different numbers of dimensions")
            features = flat.reshape(count, -1)
            if self.max_samples is not None and len(features) > self.max_samples:
                generator = torch.Generator().manual_seed(self.seed)
                keep = torch.randperm(len(features), generator=generator)[: self.max_samples]
                features = features[keep.to(features.device)]
            sets.append(features)
        real, fake = sets
        if real.shape[1] != fake.shape[1]:
            raise ValueError(f"real features have {real.shape[1]} dimensions, fake features {fake.shape[1]}")
        return real, fake


class PrecisionRecall(_KNNManifoldMetric):
    """Improved precision and recall (Kynkäänniemi et al. 2019) as a torchmetrics ``Metric``.

    ``compute()`` returns float64 0-d tensors ``precision`` and ``recall``, see
    :func:`precision_recall`. The paper uses k = 3 and 50k samples per set in VGG-16 features.
    """

    def __init__(
        self,
        k: int = 3,
        reset_real_features: bool = True,
        max_samples: int | None = None,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(k, reset_real_features, max_samples, seed, **kwargs)

    def compute(self) -> dict[str, Tensor]:
        real, fake = self._feature_sets()
        return precision_recall(real, fake, self.k)


class DensityCoverage(_KNNManifoldMetric):
    """Density and coverage (Naeem et al. 2020) as a torchmetrics ``Metric``.

    ``compute()`` returns float64 0-d tensors ``density`` and ``coverage``, see
    :func:`density_coverage`. The paper recommends k = 5 and 10k samples per set.
    """

    def __init__(
        self,
        k: int = 5,
        reset_real_features: bool = True,
        max_samples: int | None = None,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(k, reset_real_features, max_samples, seed, **kwargs)

    def compute(self) -> dict[str, Tensor]:
        real, fake = self._feature_sets()
        return density_coverage(real, fake, self.k)
