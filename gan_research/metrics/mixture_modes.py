"""Mode counting: recovered modes of 2-D Gaussian mixtures and class coverage of labelled data.

``MixtureModes`` implements the protocol of Srivastava et al. 2017, "VEEGAN: Reducing Mode
Collapse in GANs using Implicit Variational Learning" (Sec. 5.1), reused by Lin et al. 2018,
"PacGAN: The power of two samples in generative adversarial networks" (Sec. 5): draw
``PROTOCOL_SAMPLES`` = 2500 generated points, call a point *high quality* when it lies within
three standard deviations of its nearest mode, call a mode *recovered* when at least one
high-quality point has it as nearest mode, and report the KL divergence between the histogram
of nearest modes (of high-quality points) and the uniform distribution over modes.

``ClassHistogram`` is the same idea for labelled image data, where a pretrained classifier
assigns each generated image a class: the number of classes covered and the KL divergence of
the generated class histogram to the data's class distribution. On Stacked-MNIST (Metz et al.
2017, "Unrolled Generative Adversarial Networks"; Lin et al. 2018) the class of an image is the
triple of digit predictions, ``100*d1 + 10*d2 + d3``, over 1000 classes, and the reported
"modes covered" is ``classes_covered``.

Both metrics keep only per-mode/per-class counts (sufficient statistics) in sum-reduced states,
so merging across DDP processes is exact and ``compute()`` equals the single-process value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor
from torchmetrics import Metric

from gan_research.errors import ConfigError
from gan_research.utils.validation import check_positive_float, check_positive_int


class _Mixture(Protocol):
    """What ``MixtureModes.from_mixture`` reads: the mixtures of ``gan_research.data.mixtures``."""

    modes: Tensor
    std: float


def _kl_from_counts(counts: Tensor, reference: Tensor) -> Tensor:
    """KL(p ‖ q) = Σ_i p_i log(p_i / q_i) with p = counts / Σ counts, in float64.

    Terms with p_i = 0 contribute 0 (the limit of x log x), and q > 0 everywhere, so the value is
    finite whenever there is at least one count. With no counts p is undefined: NaN.
    """
    total = counts.sum()
    if total == 0:
        return torch.tensor(math.nan, dtype=torch.float64, device=counts.device)
    p = counts.to(torch.float64) / total
    # xlogy(0, .) == 0 exactly, so empty bins need no epsilon.
    return torch.xlogy(p, p / reference.to(device=p.device, dtype=torch.float64)).sum()


class MixtureModes(Metric):
    """Modes recovered, % high-quality samples and KL to uniform on a Gaussian mixture.

    With modes μ_1..μ_M, shared standard deviation σ and samples x_1..x_N:

    - nearest mode m(x) = argmin_i ‖x − μ_i‖; x is *high quality* (HQ) iff
      ‖x − μ_m(x)‖ ≤ ``threshold_std``·σ (3σ in VEEGAN/PacGAN);
    - ``modes_recovered`` = #{i : c_i ≥ 1} with c_i = #{HQ x : m(x) = i};
    - ``high_quality`` = 100 · Σ_i c_i / N (percent of all samples);
    - ``kl_uniform`` = KL(p̂ ‖ u) = Σ_i p̂_i log(p̂_i · M), with p̂_i = c_i / Σ_j c_j the histogram
      of nearest modes over HQ samples only and u_i = 1/M. This direction is finite even when modes
      are empty (0 log 0 = 0 and u > 0); it is 0 for a perfectly balanced generator and log M when
      all HQ samples sit on one mode. It is NaN when there is no HQ sample (p̂ undefined).
    - ``num_samples`` = N.

    The published numbers use ``PROTOCOL_SAMPLES`` = 2500 samples; other sample counts change
    ``modes_recovered`` and ``kl_uniform``, so log the count with the value.

    States are the per-mode HQ counts c and N, both sum-reduced: DDP merging is exact.

    Args:
        modes: (M, D) mode centres; D = 2 for the ring and grid mixtures.
        std: the shared standard deviation σ of the mixture components.
        threshold_std: the HQ radius in units of σ.
    """

    PROTOCOL_SAMPLES: ClassVar[int] = 2500

    is_differentiable = False
    # Mixed directions: modes_recovered and high_quality are better high, kl_uniform low.
    higher_is_better = None
    full_state_update = False

    hq_counts: Tensor
    total: Tensor

    def __init__(self, modes: Tensor, std: float, threshold_std: float = 3.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        modes = torch.as_tensor(modes, dtype=torch.float64).detach().cpu()
        if modes.ndim != 2 or len(modes) == 0 or modes.shape[1] == 0:
            raise ConfigError(f"modes must be a non-empty (num_modes, dim) tensor, got {tuple(modes.shape)}")
        std = check_positive_float("", "std", std, form="key")
        threshold_std = check_positive_float("", "threshold_std", threshold_std, form="key")
        # A plain attribute, not a buffer: Metric.half()/.float() would round a buffer, and the
        # mode positions must stay exact for the 3σ test. Moved to the samples' device in update().
        self._modes = modes
        self.std = float(std)
        self.threshold_std = float(threshold_std)
        self.add_state("hq_counts", torch.zeros(len(modes), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    @classmethod
    def from_mixture(cls, mixture: _Mixture, threshold_std: float = 3.0, **kwargs: Any) -> MixtureModes:
        """The metric for a mixture exposing ``modes`` and ``std`` (``RingMixture``, ``GridMixture``)."""
        return cls(mixture.modes, mixture.std, threshold_std=threshold_std, **kwargs)

    @property
    def modes(self) -> Tensor:
        """The (M, D) mode centres, float64."""
        return self._modes

    @property
    def num_modes(self) -> int:
        return len(self._modes)

    def update(self, samples: Tensor) -> None:
        """Count the HQ samples of a (N, D) batch per nearest mode."""
        dim = self._modes.shape[1]
        if samples.ndim != 2 or samples.shape[1] != dim:
            raise ValueError(f"samples must have shape (N, {dim}), got {tuple(samples.shape)}")
        samples = samples.detach().to(torch.float64)
        # M is small (8 or 25), so the N×M distance matrix is no bigger than the batch itself.
        distances = torch.cdist(samples, self._modes.to(samples.device))
        nearest_distance, nearest = distances.min(dim=1)
        high_quality = nearest_distance <= self.threshold_std * self.std
        self.hq_counts += torch.bincount(nearest[high_quality], minlength=self.num_modes).to(self.hq_counts)
        self.total += len(samples)

    def compute(self) -> dict[str, Tensor]:
        """Return ``modes_recovered``, ``high_quality`` (%), ``kl_uniform`` and ``num_samples``.

        ``high_quality`` and ``kl_uniform`` are float64 0-d tensors (NaN without samples / without
        HQ samples); the counts are int64 0-d tensors.
        """
        hq_total = self.hq_counts.sum()
        uniform = torch.full((self.num_modes,), 1.0 / self.num_modes, dtype=torch.float64)
        return {
            "modes_recovered": (self.hq_counts > 0).sum(),
            "high_quality": 100.0 * hq_total.to(torch.float64) / self.total.to(torch.float64),
            "kl_uniform": _kl_from_counts(self.hq_counts, uniform),
            "num_samples": self.total.clone(),
        }


class ClassHistogram(Metric):
    """Classes covered and KL(generated class histogram ‖ data class distribution).

    With predicted classes y_1..y_N ∈ {0..K−1} of generated samples, counts c_k = #{n : y_n = k},
    p_gen = c / N and the data's class distribution p_data (uniform by default):

    - ``classes_covered`` = #{k : c_k ≥ 1} (Stacked-MNIST's "modes covered" with K = 1000);
    - ``kl_to_data`` = KL(p_gen ‖ p_data) = Σ_k p_gen,k log(p_gen,k / p_data,k) (Metz et al. 2017,
      Sec. 3.3; Lin et al. 2018, Table 2). This direction is finite because p_data > 0 is required;
      NaN with no samples;
    - ``num_samples`` = N.

    Args:
        num_classes: K.
        data_distribution: K positive class frequencies of the data (normalised here); ``None``
            for uniform, as for MNIST-like balanced datasets.
    """

    is_differentiable = False
    # Mixed directions: classes_covered is better high, kl_to_data low.
    higher_is_better = None
    full_state_update = False

    counts: Tensor

    def __init__(
        self, num_classes: int, data_distribution: Tensor | Sequence[float] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        check_positive_int("", "num_classes", num_classes, form="key")
        if data_distribution is None:
            reference = torch.full((num_classes,), 1.0 / num_classes, dtype=torch.float64)
        else:
            reference = torch.as_tensor(data_distribution, dtype=torch.float64).detach().cpu()
            if reference.shape != (num_classes,):
                raise ConfigError(
                    f"data_distribution must have {num_classes} entries, got shape {tuple(reference.shape)}"
                )
            if not bool(torch.isfinite(reference).all()) or not bool((reference > 0).all()):
                # A zero entry would make KL infinite as soon as the generator produced that class.
                raise ConfigError(f"data_distribution must be finite and > 0 in every class, got {reference}")
            reference = reference / reference.sum()
        self.num_classes = num_classes
        # Plain attribute for the same reason as MixtureModes._modes: keep it float64 and exact.
        self._data_distribution = reference
        self.add_state("counts", torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")

    @property
    def data_distribution(self) -> Tensor:
        """The normalised (K,) data class distribution, float64."""
        return self._data_distribution

    def update(self, predictions: Tensor) -> None:
        """Count a batch of predicted classes: (N,) integer indices, or (N, K) scores (argmax taken)."""
        predictions = predictions.detach()
        if predictions.ndim == 2 and predictions.shape[1] == self.num_classes:
            predictions = predictions.argmax(dim=1)
        if predictions.ndim != 1 or predictions.is_floating_point() or predictions.is_complex():
            raise ValueError(
                f"predictions must be (N,) integer class indices or (N, {self.num_classes}) scores, "
                f"got dtype {predictions.dtype} and shape {tuple(predictions.shape)}"
            )
        if predictions.numel() and (predictions.min() < 0 or predictions.max() >= self.num_classes):
            raise ValueError(
                f"class indices must lie in [0, {self.num_classes}), got range "
                f"[{int(predictions.min())}, {int(predictions.max())}]"
            )
        self.counts += torch.bincount(predictions.long(), minlength=self.num_classes).to(self.counts)

    def compute(self) -> dict[str, Tensor]:
        """Return ``classes_covered`` (int64), ``kl_to_data`` (float64) and ``num_samples`` (int64)."""
        return {
            "classes_covered": (self.counts > 0).sum(),
            "kl_to_data": _kl_from_counts(self.counts, self._data_distribution),
            "num_samples": self.counts.sum(),
        }
