"""Mode-collapse signals: a feature-diversity ratio and a threshold detector over metric values.

``diversity_score`` compares the spread of generated features with that of real features, in
the spirit of the sample-diversity statistics used to diagnose collapse (Arora & Zhang 2017,
"Do GANs actually learn the distribution?"; the LPIPS/feature-distance diversity of Zhu et al.
2017, "Toward Multimodal Image-to-Image Translation"): a collapsed generator repeats itself, so
its samples are closer to each other than real samples are.

``CollapseDetector`` turns the values of this module, of Naeem et al.'s coverage
(``gan_research.metrics.prdc``) and of mode counts (``gan_research.metrics.mixture_modes``)
into a yes/no flag with human-readable reasons, for callbacks and reports.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from gan_research.errors import ConfigError

# Distances held in memory at once per block (float64: 8 bytes each → 128 MiB).
_CHUNK_ELEMENTS = 2**24


def mean_pairwise_distance(features: Tensor, max_samples: int | None = None, seed: int = 0) -> float:
    """Mean Euclidean distance over the n(n−1) ordered pairs of distinct samples of ``features``.

    ``features`` is (n, ...) with trailing dims flattened; float64, block by block. With
    ``max_samples`` a seeded random subset bounds the O(n²) cost.
    """
    x = features.detach().reshape(len(features), -1).to(torch.float64)
    if max_samples is not None and len(x) > max_samples:
        keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:max_samples]
        x = x[keep.to(x.device)]
    n = len(x)
    if n < 2:
        raise ValueError(f"the mean pairwise distance needs at least 2 samples, got {n}")
    # Distances are translation invariant; moving the first sample to the origin shrinks the norms
    # in cdist's ‖a‖² + ‖b‖² − 2a·b formula (less cancellation) and makes copies of that sample
    # exact zeros, so a fully collapsed batch scores exactly 0.
    x = x - x[:1]
    rows = max(1, _CHUNK_ELEMENTS // n)
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for start in range(0, n, rows):
        block = torch.cdist(x[start : start + rows], x)
        # The diagonal (a sample to itself) is 0 in exact arithmetic but not quite with cdist's
        # matrix-product formula; zero it so identical samples score exactly 0.
        idx = torch.arange(len(block), device=x.device)
        block[idx, start + idx] = 0.0
        total += block.sum()
    return float(total / (n * (n - 1)))


def diversity_score(
    fake_features: Tensor, real_features: Tensor, max_samples: int | None = None, seed: int = 0
) -> float:
    """Mean pairwise distance of fake features divided by that of real features.

    ≈ 1 when the generator is as diverse as the data, → 0 under mode collapse (0 exactly when
    all generated samples are identical), > 1 when samples are more spread than the data.
    """
    reference = mean_pairwise_distance(real_features, max_samples, seed)
    if reference == 0.0:
        raise ValueError("real_features are all identical (mean pairwise distance 0): diversity is undefined")
    return mean_pairwise_distance(fake_features, max_samples, seed) / reference


def _check_threshold(name: str, value: float | None, upper: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ConfigError(f"{name} must be a number >= 0 or null (disabled), got {value!r}")
    if upper is not None and value > upper:
        raise ConfigError(f"{name} must lie in [0, {upper}] or be null (disabled), got {value!r}")
    return float(value)


class CollapseDetector:
    """Flags mode collapse when a diversity signal falls below its threshold.

    Checks (each disabled by ``None``):

    - ``coverage`` < ``min_coverage`` (Naeem et al. 2020 coverage ∈ [0, 1]);
    - ``diversity`` < ``min_diversity`` (:func:`diversity_score`);
    - recovered modes / ``num_modes`` < ``min_modes_fraction``, reading ``modes_recovered``
      (:class:`MixtureModes`) or else ``classes_covered`` (:class:`ClassHistogram`).

    ``check`` accepts plain or stage-prefixed keys (``coverage`` or ``val/coverage``), and floats
    or 0-d tensors. A metric an enabled check needs but the dict lacks is an error, not a pass:
    a threshold on a metric that is never computed is a configuration mistake. A NaN value
    flags collapse (it means a degenerate evaluation, e.g. no high-quality sample).
    """

    def __init__(
        self,
        min_coverage: float | None = 0.5,
        min_diversity: float | None = 0.5,
        min_modes_fraction: float | None = None,
        num_modes: int | None = None,
    ) -> None:
        self.min_coverage = _check_threshold("min_coverage", min_coverage, 1.0)
        self.min_diversity = _check_threshold("min_diversity", min_diversity, None)
        self.min_modes_fraction = _check_threshold("min_modes_fraction", min_modes_fraction, 1.0)
        bad_num_modes = isinstance(num_modes, bool) or not isinstance(num_modes, int) or num_modes < 1
        if num_modes is not None and bad_num_modes:
            raise ConfigError(f"num_modes must be a positive integer or null, got {num_modes!r}")
        if self.min_modes_fraction is not None and num_modes is None:
            raise ConfigError("min_modes_fraction needs num_modes (how many modes or classes the data has)")
        self.num_modes = num_modes

    def check(self, metrics: Mapping[str, Any]) -> tuple[bool, list[str]]:
        """Return (collapsed, reasons); each reason names the metric, its value and the threshold."""
        reasons: list[str] = []
        for name, threshold in (("coverage", self.min_coverage), ("diversity", self.min_diversity)):
            if threshold is None:
                continue
            value = _lookup(metrics, (name,))[1]
            if math.isnan(value) or value < threshold:
                reasons.append(f"{name}={value:.4g} < min_{name}={threshold:.4g}")
        if self.min_modes_fraction is not None:
            assert self.num_modes is not None  # enforced in __init__
            name, recovered = _lookup(metrics, ("modes_recovered", "classes_covered"))
            fraction = recovered / self.num_modes
            if math.isnan(fraction) or fraction < self.min_modes_fraction:
                reasons.append(
                    f"{name}={recovered:.4g}/{self.num_modes} (fraction {fraction:.4g}) "
                    f"< min_modes_fraction={self.min_modes_fraction:.4g}"
                )
        return bool(reasons), reasons


def _lookup(metrics: Mapping[str, Any], names: tuple[str, ...]) -> tuple[str, float]:
    """The first of ``names`` found in ``metrics``, as ``name`` or as a ``stage/name`` suffix."""
    for name in names:
        if name in metrics:
            return name, _to_float(metrics[name])
        matches = sorted(key for key in metrics if key.endswith("/" + name))
        if len(matches) > 1:
            raise KeyError(f"several metrics match {name!r}: {matches}; pass only one stage's metrics")
        if matches:
            return matches[0], _to_float(metrics[matches[0]])
    raise KeyError(f"collapse check needs one of {list(names)}, but the metrics are {sorted(metrics)}")


def _to_float(value: Any) -> float:
    return float(value.item()) if isinstance(value, Tensor) else float(value)
