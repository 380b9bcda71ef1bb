"""Metrics of class-conditional generators: does a sample show the class it was generated for?

A class-conditional GAN (cGAN, AC-GAN) is asked for class ``y`` and returns an image; the
unconditional metrics (FID, IS, class histogram) cannot tell a generator that draws good
digits of the *wrong* class from a correct one. Two standard metrics can:

- :class:`ConditionalClassAccuracy`: the fraction of generated samples a pretrained domain
  classifier assigns to their intended class, the "classification accuracy" of conditional
  GAN evaluation (Odena, Olah & Shlens 2017, "Conditional Image Synthesis with Auxiliary
  Classifier GANs", ICML, Sec. 4.1, which scores AC-GAN samples with an Inception network
  this way). It is *not* the Classification Accuracy Score of Ravuri & Vinyals 2019, which
  trains a classifier on generated data.
- :class:`IntraClassFID`: the FID between real and generated features computed per class and
  averaged over classes, the "intra-FID" of Miyato & Koyama 2018, "cGANs with Projection
  Discriminator", ICLR, Sec. 5 (Sec. 5.1 for ImageNet). A generator that ignores its label
  keeps a good FID but gets a high intra-FID.

Both keep only sufficient statistics in sum-reduced states (``dist_reduce_fx="sum"``), so the
generated side merges exactly across DDP processes and ``compute()`` equals the value one
process would get from all samples.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from gan_research.errors import ConfigError
from gan_research.metrics.fid import _mean_cov, frechet_distance
from gan_research.utils.validation import check_int_at_least

__all__ = ["ConditionalClassAccuracy", "IntraClassFID"]


def _check_labels(labels: Tensor, num_classes: int, num_rows: int, what: str) -> Tensor:
    """``labels`` as (N,) int64 class indices in [0, num_classes), N = ``num_rows``."""
    if (
        not isinstance(labels, Tensor)
        or labels.ndim != 1
        or labels.is_floating_point()
        or labels.is_complex()
    ):
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        dtype = labels.dtype if isinstance(labels, Tensor) else None
        raise ValueError(
            f"{what} must be an (N,) integer tensor of class indices, got {shape} of dtype {dtype}"
        )
    if len(labels) != num_rows:
        raise ValueError(f"{what} has {len(labels)} entries for {num_rows} samples")
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{what} must lie in [0, {num_classes}), got range [{int(labels.min())}, {int(labels.max())}]"
        )
    return labels.long()


class ConditionalClassAccuracy(Metric):
    """Fraction of generated samples the domain classifier assigns to their intended class.

    With intended labels y_1..y_N (the class each sample was generated for) and classifier
    predictions ŷ_n = argmax_k logits_n,k:

    - ``accuracy`` = #{n : ŷ_n = y_n} / N (Odena et al. 2017, Sec. 4.1); 1 for a generator
      whose every sample the classifier reads as its intended class, about 1/K for one that
      ignores its label, about 0 for one that draws consistently the wrong class;
    - ``per_class`` (K,) = #{n : y_n = k, ŷ_n = k} / #{n : y_n = k}, the accuracy per intended
      class (NaN for a class no sample was generated for);
    - ``num_samples`` = N.

    ``accuracy`` equals torchmetrics' ``MulticlassAccuracy(average="micro")`` and
    ``per_class`` its ``average=None`` (the recall of each intended class); this metric keeps
    the (K,) counts of correct and total samples per intended class, sum-reduced, so it needs
    no confusion matrix and marks empty classes NaN rather than 0. ``accuracy`` is NaN with no
    samples. The classifier's own test accuracy bounds what a perfect generator can score.

    Args:
        num_classes: K.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    correct: Tensor
    total: Tensor

    def __init__(self, num_classes: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_classes = check_int_at_least("", "num_classes", num_classes, 1, form="key")
        self.add_state("correct", torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, predictions: Tensor, intended: Tensor) -> None:
        """Count a batch: ``predictions`` are (N, K) classifier scores (argmax taken) or (N,)
        predicted class indices; ``intended`` the (N,) classes the samples were generated for."""
        predictions = predictions.detach()
        if predictions.ndim == 2 and predictions.shape[1] == self.num_classes:
            predictions = predictions.argmax(dim=1)
        if predictions.ndim != 1 or predictions.is_floating_point() or predictions.is_complex():
            raise ValueError(
                f"predictions must be (N,) integer class indices or (N, {self.num_classes}) scores, "
                f"got dtype {predictions.dtype} and shape {tuple(predictions.shape)}"
            )
        intended = _check_labels(intended.detach(), self.num_classes, len(predictions), "intended labels")
        intended = intended.to(predictions.device)
        hits = intended[predictions.long() == intended]
        self.correct += torch.bincount(hits, minlength=self.num_classes).to(self.correct)
        self.total += torch.bincount(intended, minlength=self.num_classes).to(self.total)

    def compute(self) -> dict[str, Tensor]:
        """Return ``accuracy`` (float64 0-d), ``per_class`` ((K,) float64) and ``num_samples`` (int64)."""
        n = self.total.sum()
        accuracy = (
            self.correct.sum().double() / n
            if n > 0
            else torch.tensor(math.nan, dtype=torch.float64, device=n.device)
        )
        per_class = self.correct.double() / self.total.double()  # 0/0 = NaN for empty classes
        return {"accuracy": accuracy, "per_class": per_class, "num_samples": n.clone()}


class IntraClassFID(Metric):
    """Intra-FID: the mean over classes of the FID between a class's real and generated features.

    For each class k, Gaussians are fitted to the real features of class k and to the features
    of samples generated *for* class k (their intended label), and

        intra_fid = (1/K) Σ_k d²(N(μ_r,k, Σ_r,k), N(μ_g,k, Σ_g,k))

    with d² the Fréchet distance of :func:`~gan_research.metrics.fid.frechet_distance`
    (Heusel et al. 2017, eq. 6), in float64 (Miyato & Koyama 2018, Sec. 5).

    State: per class the sample count, the feature sum and the sum of feature outer products
    of the generated side, float64 and sum-reduced, so DDP processes merge exactly. The real
    side is set once with :meth:`set_real` and kept across :meth:`reset` (as FID's
    ``reset_real_features=False``); it is *not* synced: every process must pass the whole real
    set (which :class:`~gan_research.metrics.suite.MetricSuite` does). Memory is
    ``K · D² · 8`` bytes per side: 1.3 MB for 10 classes of 128 classifier features, but
    335 MB for 2048-dimensional Inception features, which is why the suite computes it in
    the domain classifier's feature space.

    Small classes: a covariance needs two samples, and a mean over another set of classes is
    not comparable between runs, so :meth:`compute` raises :class:`~gan_research.errors.ConfigError`
    (a ``ValueError``) naming every class with fewer than 2 real or 2 generated samples and
    both counts, rather than skipping it. Generate more samples (``metrics.num_samples``) or
    use a larger real set (``metrics.num_real``). A class with at least 2 but fewer than D
    samples has a singular covariance, which ``frechet_distance`` handles; the estimate is
    then biased upward, like any FID from few samples: compare intra-FIDs at equal counts.

    Args:
        num_classes: K.
        num_features: D, the width of the feature vectors.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    fake_count: Tensor
    fake_sum: Tensor
    fake_outer: Tensor

    def __init__(self, num_classes: int, num_features: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_classes = check_int_at_least("", "num_classes", num_classes, 1, form="key")
        self.num_features = check_int_at_least("", "num_features", num_features, 1, form="key")
        k, d = num_classes, num_features
        self.add_state("fake_count", torch.zeros(k, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("fake_sum", torch.zeros(k, d, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("fake_outer", torch.zeros(k, d, d, dtype=torch.float64), dist_reduce_fx="sum")
        # Plain attributes, not states: untouched by reset() and by the DDP sum (every process
        # holds the whole real set), never cast by .half()/.float(). Moved in compute().
        self._real: tuple[Tensor, Tensor, Tensor] | None = None

    def _class_sums(self, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(count (K,), sum (K, D), outer-product sum (K, D, D)) of a batch, float64."""
        if features.ndim != 2 or features.shape[1] != self.num_features:
            raise ValueError(
                f"features must have shape (N, {self.num_features}), got {tuple(features.shape)}"
            )
        labels = _check_labels(labels.detach(), self.num_classes, len(features), "labels")
        features = features.detach().to(torch.float64)
        labels = labels.to(features.device)
        k, d = self.num_classes, self.num_features
        count = torch.bincount(labels, minlength=k)
        total = torch.zeros(k, d, dtype=torch.float64, device=features.device).index_add_(0, labels, features)
        outer = torch.zeros(k, d, d, dtype=torch.float64, device=features.device)
        # One (n_k, D)ᵀ(n_k, D) product per class present, not N separate (D, D) outer products.
        for c in torch.nonzero(count).flatten().tolist():
            rows = features[labels == c]
            outer[c] = rows.T @ rows
        return count, total, outer

    def set_real(self, features: Tensor, labels: Tensor) -> None:
        """Set the real side: (N, D) features of real samples and their (N,) class labels.

        Replaces any earlier real side; kept across :meth:`reset`.
        """
        count, total, outer = self._class_sums(features, labels)
        self._real = (count.cpu(), total.cpu(), outer.cpu())

    @property
    def real_counts(self) -> Tensor | None:
        """Real samples per class ((K,) int64), or None before :meth:`set_real`."""
        return None if self._real is None else self._real[0]

    def update(self, features: Tensor, labels: Tensor) -> None:
        """Add generated samples: (N, D) features and the (N,) classes they were generated for."""
        count, total, outer = self._class_sums(features, labels)
        self.fake_count += count.to(self.fake_count)
        self.fake_sum += total.to(self.fake_sum)
        self.fake_outer += outer.to(self.fake_outer)

    def compute(self) -> dict[str, Tensor]:
        """Return ``intra_fid`` (float64 0-d, the mean over classes) and ``per_class`` ((K,) float64).

        Raises:
            ConfigError: :meth:`set_real` was not called, or a class has fewer than 2 real or
                2 generated samples (the message lists each such class with both counts).
        """
        if self._real is None:
            raise ConfigError("IntraClassFID has no real side: call set_real(features, labels) first")
        device = self.fake_sum.device
        real_count, real_sum, real_outer = (t.to(device) for t in self._real)
        fake_count = self.fake_count
        small = [
            f"class {c}: {int(real_count[c])} real, {int(fake_count[c])} generated"
            for c in range(self.num_classes)
            if real_count[c] < 2 or fake_count[c] < 2
        ]
        if small:
            raise ConfigError(
                "intra-class FID needs at least 2 real and 2 generated samples of every class; "
                f"{'; '.join(small)}. Generate more samples (metrics.num_samples) or use more real "
                "ones (metrics.num_real)."
            )
        per_class = torch.empty(self.num_classes, dtype=torch.float64, device=device)
        for c in range(self.num_classes):
            mu_r, cov_r = _mean_cov(real_sum[c], real_outer[c], int(real_count[c]))
            mu_g, cov_g = _mean_cov(self.fake_sum[c], self.fake_outer[c], int(fake_count[c]))
            per_class[c] = frechet_distance(mu_r, cov_r, mu_g, cov_g)
        return {"intra_fid": per_class.mean(), "per_class": per_class}
