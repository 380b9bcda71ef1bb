"""Metrics of image-to-image translation on a dataset's validation pairs (pix2pix, CycleGAN).

- Paired data (``spec.kind`` is ``DataKind.PAIRED``): how close G(a) is to the target b.
  ``val/l1``: mean absolute error per pixel in [-1, 1] units (the L1 term of pix2pix's
  eq. 4, as trained); ``val/psnr`` (dB) and ``val/ssim`` (Wang et al. 2004, Gaussian
  window 11, σ 1.5, k1 0.01, k2 0.03), torchmetrics' implementations on images mapped
  to [0, 1] with ``data_range=1``, both averaged over images (PSNR per image first, as
  usually reported, rather than from the pooled squared error). PSNR is unchanged by
  the map from [-1, 1] (with data range 2); SSIM's luminance term is not, so the map
  makes it SSIM of the images as they are saved. PSNR is ``inf`` for an exact copy.
- A family that translates back (``translate_back``, CycleGAN): ``val/cycle_l1`` =
  mean |F(G(a)) - a| and ``val/cycle_l1_b`` = mean |G(F(b)) - b|, per pixel.
- FID of translated validation inputs against the real target-domain validation images
  (Heusel et al. 2017) in a feature space, with :class:`~gan_research.metrics.fid.FeatureFID`
  (float64): ``val/fid`` with Inception, ``val/fid_<domain>`` (``val/fid_digits``) with the
  domain classifier the dataset declares (``spec.domain``; its ``view`` maps target images into
  the classifier's input, the same map for real and translated images). ``feature_network="auto"``
  picks that classifier when the dataset declares one, Inception otherwise; ``none`` skips FID.

Every process evaluates the whole validation split (tens to hundreds of pairs), so no
metric needs a cross-process sync and every rank gets the same numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from gan_research.errors import ConfigError, DataError
from gan_research.metrics.evaluator import (
    FEATURE_NETWORKS,
    MappedFeatures,
    domain_classifier,
    module_device,
    no_domain_message,
    require_data_kind,
    spec_of,
)
from gan_research.metrics.fid import FeatureFID, metric_key
from gan_research.utils.data_spec import DataKind, DataSpec

log = logging.getLogger(__name__)

__all__ = [
    "FEATURE_NETWORKS",
    "MappedFeatures",
    "MeanAbsoluteError",
    "TranslationMetrics",
    "psnr_metric",
    "ssim_metric",
    "to_unit_range",
]


class MeanAbsoluteError(Metric):
    """Mean absolute error per element, in float64 (sum and count states, synced by sum)."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("total", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        if preds.shape != target.shape:
            raise ValueError(f"shapes differ: {tuple(preds.shape)} vs {tuple(target.shape)}")
        self.total += (preds.double() - target.double()).abs().sum()
        self.count += preds.numel()

    def compute(self) -> Tensor:
        return self.total / self.count


def to_unit_range(x: Tensor) -> Tensor:
    """Images in [-1, 1] → [0, 1] in float64 (clamped: data_range 1 assumes it)."""
    return (x.double().clamp(-1, 1) + 1) / 2


def psnr_metric() -> PeakSignalNoiseRatio:
    """PSNR per image (dim=(1, 2, 3)) averaged over images, for images in [0, 1]."""
    return PeakSignalNoiseRatio(
        data_range=1.0, dim=(1, 2, 3), reduction="elementwise_mean", sync_on_compute=False
    )


def ssim_metric() -> StructuralSimilarityIndexMeasure:
    """SSIM averaged over images, for images in [0, 1].

    torchmetrics' convention: an 11×11 Gaussian window of σ 1.5, borders reflect-padded so
    every pixel has a value, variances clamped at 0, the map averaged over all pixels and
    channels (scikit-image's ``structural_similarity`` crops the borders instead).
    """
    return StructuralSimilarityIndexMeasure(data_range=1.0, sigma=1.5, sync_on_compute=False)


class TranslationMetrics:
    """The evaluator of translators (see :mod:`gan_research.metrics.evaluator` for the protocol):
    L1/PSNR/SSIM, cycle errors and FID over a translation datamodule's validation pairs.

    Args:
        num_samples: validation pairs to use (None: all of them, in the datamodule's order).
        feature_network: FID's feature space: ``auto``, ``classifier`` (data that declares a
            domain classifier), ``inception`` or ``none``.
        classifier_path: the domain classifier checkpoint (default
            ``<data_dir>/classifiers/<domain>_<size>.pt``, shared with the other metrics).
        train_classifier_if_missing: train and cache it when missing (as ``gan-classifier``).
        inception_weights: local InceptionV3 weights (see ``metrics/inception.py``).
        data_dir: root of the classifier cache.
        batch_size: pairs per forward pass.
    """

    data_kinds: ClassVar[tuple[DataKind, ...]] = (DataKind.PAIRED, DataKind.UNPAIRED)
    #: What it reads from the model (``evaluator.require_scores``).
    scores: ClassVar[str] = "translations"
    scores_description: ClassVar[str] = "translations of input images"

    def __init__(
        self,
        num_samples: int | None = None,
        feature_network: str = "auto",
        classifier_path: str | None = None,
        train_classifier_if_missing: bool = True,
        inception_weights: str | None = None,
        data_dir: str = "data",
        batch_size: int = 64,
    ) -> None:
        if feature_network not in FEATURE_NETWORKS:
            raise ConfigError(
                f"metrics.feature_network={feature_network!r} is invalid; valid: {list(FEATURE_NETWORKS)}"
            )
        if num_samples is not None and (isinstance(num_samples, bool) or int(num_samples) < 2):
            raise ConfigError(f"metrics.num_samples={num_samples!r} is invalid: expected null or an int >= 2")
        if int(batch_size) < 1:
            raise ConfigError(f"metrics.batch_size={batch_size!r} is invalid: expected an int >= 1")
        self.num_samples = None if num_samples is None else int(num_samples)
        self.classifier_path = classifier_path
        self.train_classifier_if_missing = train_classifier_if_missing
        self.inception_weights = inception_weights
        self.data_dir = Path(data_dir)
        self.batch_size = int(batch_size)
        self.requested_feature_network = feature_network
        self.feature_network = feature_network  # resolved against the data by prepare()
        self.datamodule: Any = None
        self.fid: FeatureFID | None = None
        self.fid_key: str | None = None
        self.last_collapse_reasons: list[str] = []  # translations have no collapse check
        self._built = False

    def feature_network_for(self, spec: DataSpec) -> str:
        """The feature network FID uses on ``spec``'s data (``feature_network`` resolved).

        Raises:
            ConfigError: the data is not translation data, or the choice needs a domain
                classifier the data does not declare.
        """
        require_data_kind(self, spec, "Its metrics are metrics=default (or metrics=inception)")
        choice = self.requested_feature_network
        if choice == "auto":
            return "classifier" if spec.domain is not None else "inception"
        if choice == "classifier" and spec.domain is None:
            raise ConfigError(no_domain_message(spec, "Use metrics.feature_network=inception or none"))
        return choice

    # ------------------------------------------------------------ building
    def prepare(self, datamodule: Any) -> None:
        """Bind to ``datamodule``, read its validation pairs and build the metrics (failing early
        on a missing feature network); again for the same datamodule does nothing."""
        if self._built and datamodule is self.datamodule:
            return
        spec = spec_of(datamodule)
        self.feature_network = self.feature_network_for(spec)
        self.datamodule, self.spec, self.name = datamodule, spec, spec.name
        self.paired = spec.kind is DataKind.PAIRED
        datamodule.prepare_data()
        datamodule.setup("fit")
        self.a, self.b = self._pairs()
        size = int(self.b.shape[-1])
        self.l1 = MeanAbsoluteError(sync_on_compute=False)
        self.psnr = psnr_metric()
        self.ssim = ssim_metric()
        self.cycle_l1 = MeanAbsoluteError(sync_on_compute=False)
        self.cycle_l1_b = MeanAbsoluteError(sync_on_compute=False)
        self.fid, self.fid_key = None, None
        if self.feature_network != "none":
            net = self._feature_net(size)
            self.fid = FeatureFID(net, sync_on_compute=False)
            self.fid_key = metric_key("fid", net.name)
            # The real side, once: the target-domain validation images.
            with torch.no_grad():
                for chunk in self.b.split(self.batch_size):
                    self.fid.update(chunk.float(), real=True)
        self._built = True

    def _pairs(self) -> tuple[Tensor, Tensor]:
        a_chunks, b_chunks, n = [], [], 0
        for batch in self.datamodule.val_dataloader():
            a_chunks.append(batch[0])
            b_chunks.append(batch[1])
            n += len(batch[0])
            if self.num_samples is not None and n >= self.num_samples:
                break
        if n < 2:
            raise DataError(f"dataset '{self.name}' has {n} validation pairs; the metrics need at least 2")
        a, b = torch.cat(a_chunks)[: self.num_samples], torch.cat(b_chunks)[: self.num_samples]
        if self.num_samples is not None and len(a) < self.num_samples:
            log.warning(
                "dataset %s has %d validation pairs, fewer than metrics.num_samples=%d",
                self.name,
                len(a),
                self.num_samples,
            )
        return a, b

    def _feature_net(self, image_size: int) -> nn.Module:
        if self.feature_network == "inception":
            from gan_research.metrics.inception import InceptionFeatures

            return InceptionFeatures(self.inception_weights)
        domain = self.spec.domain
        assert domain is not None  # feature_network_for refused classifier without a domain
        net = domain_classifier(
            domain,
            image_size,
            data_dir=self.data_dir,
            classifier_path=self.classifier_path,
            train_if_missing=self.train_classifier_if_missing,
        )
        # The view maps the target images into the classifier's input (-x for inverted digits),
        # the same map for real and translated images: one fixed feature space.
        return MappedFeatures(net, domain.view)

    def to(self, device: torch.device | str) -> TranslationMetrics:
        for m in (self.l1, self.psnr, self.ssim, self.cycle_l1, self.cycle_l1_b, self.fid):
            if m is not None:
                m.to(device)
        return self

    # ------------------------------------------------------------ evaluating
    def evaluate(self, module: Any, world_size: int = 1) -> dict[str, float]:
        """The metrics of ``module.translate`` (A → B), plus the cycle errors when the family
        translates back (``translate_back``, CycleGAN). Both run the sampling generators in eval
        mode. Every process scores the whole validation split, so ``world_size`` changes nothing."""
        return self.evaluate_translator(
            module.translate, getattr(module, "translate_back", None), module_device(module)
        )

    def summary(self) -> dict[str, Any]:
        """What ``gan-eval`` records beside the metrics."""
        return {"num_samples": len(self.a), "feature_network": self.feature_network}

    @torch.no_grad()
    def evaluate_translator(
        self,
        translate: Callable[[Tensor], Tensor],
        translate_back: Callable[[Tensor], Tensor] | None = None,
        device: torch.device | str = "cpu",
    ) -> dict[str, float]:
        """Translate every validation input with ``translate`` (A → B, images in [-1, 1]) and
        return the metrics as floats; ``translate_back`` (B → A) adds the cycle errors."""
        if not self._built:
            raise RuntimeError("TranslationMetrics.prepare(datamodule) must run before an evaluation")
        self.to(device)
        for m in (self.l1, self.psnr, self.ssim, self.cycle_l1, self.cycle_l1_b, self.fid):
            if m is not None:
                m.reset()  # FID keeps its real statistics (reset_real_features=False)
        for a, b in zip(self.a.split(self.batch_size), self.b.split(self.batch_size), strict=True):
            a, b = a.to(device), b.to(device)
            out = translate(a).float()
            if self.paired:
                self.l1.update(out, b)
                self.psnr.update(to_unit_range(out), to_unit_range(b))
                self.ssim.update(to_unit_range(out), to_unit_range(b))
            if translate_back is not None:
                self.cycle_l1.update(translate_back(out).float(), a)
                self.cycle_l1_b.update(translate(translate_back(b)).float(), b)
            if self.fid is not None:
                self.fid.update(out.clamp(-1, 1), real=False)
        results: dict[str, float] = {}
        if self.paired:
            results["val/l1"] = float(self.l1.compute())
            results["val/psnr"] = float(self.psnr.compute())
            results["val/ssim"] = float(self.ssim.compute())
        if translate_back is not None:
            results["val/cycle_l1"] = float(self.cycle_l1.compute())
            results["val/cycle_l1_b"] = float(self.cycle_l1_b.compute())
        if self.fid is not None and self.fid_key is not None:
            results[self.fid_key] = float(self.fid.compute())
        return results
