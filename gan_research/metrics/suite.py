"""The metrics of a generator, chosen from its dataset's declaration (``datamodule.spec``):
the evaluator ``conf/metrics/default.yaml`` (and ``inception.yaml``) configure, which evaluation
during training (``callbacks/evaluation.py``) and ``gan-eval`` both run.

- ``DataKind.MIXTURE`` (ring8, grid25): the VEEGAN/PacGAN mode protocol
  (``val/modes_recovered``, ``val/high_quality``, ``val/kl_uniform``).
- ``DataKind.STACKED`` (stacked_digits): modes covered out of classes ** channels (1000),
  counted with the domain classifier on each channel (``val/modes_covered``, ``val/kl_modes``).
- ``DataKind.IMAGES``: FID, KID, IS, precision/recall, density/coverage and
  diversity in one feature space, plus for labelled data the class histogram
  of samples (``val/classes_covered``, ``val/kl_classes``). With a domain
  classifier (``spec.domain``) every feature-space key carries its name (``val/fid_digits``);
  with Inception it does not (``val/fid``), so nobody mistakes one for the other.
- class-conditional generators (``sample(n)`` returns ``(images, labels)``, the
  class each image was generated for) on labelled data with the domain
  classifier: also the classification accuracy of samples w.r.t. their intended
  class (``val/class_accuracy_digits``, Odena et al. 2017) and the intra-class
  FID (``val/intra_fid_digits``, Miyato & Koyama 2018); see
  ``metrics/conditional.py``. Their per-class values are in
  :attr:`MetricSuite.last_per_class`. Unconditional samplers get neither key.

Translation data (``DataKind.PAIRED``/``UNPAIRED``) is scored by
:class:`~gan_research.metrics.translation.TranslationMetrics` (``metrics=translation``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from gan_research.errors import ConfigError
from gan_research.metrics.collapse import CollapseDetector, diversity_score
from gan_research.metrics.conditional import ConditionalClassAccuracy, IntraClassFID
from gan_research.metrics.evaluator import (
    FEATURE_NETWORKS,
    MappedFeatures,
    describe,
    domain_classifier,
    module_device,
    no_domain_message,
    require_data_kind,
    spec_of,
)
from gan_research.metrics.fid import FeatureFID, build_metrics, load_or_compute_real_stats, real_stats_path
from gan_research.metrics.mixture_modes import ClassHistogram, MixtureModes
from gan_research.metrics.prdc import DensityCoverage, PrecisionRecall
from gan_research.utils.data_spec import DataKind, DataSpec

log = logging.getLogger(__name__)

__all__ = ["FEATURE_NETWORKS", "MetricSuite", "SampleFn"]

# ``sample(n)`` returns n samples, or ``(samples, labels)`` for a class-conditional generator:
# labels (n,) int64, the class each sample was generated for.
SampleFn = Callable[[int], Tensor | tuple[Tensor, Tensor]]


class MetricSuite:
    """The evaluator of generators (see :mod:`gan_research.metrics.evaluator` for the protocol):
    builds the metrics that fit a datamodule's declaration and evaluates a sampler with them.

    Args:
        num_samples: generated samples per evaluation (2500 is the mode protocol's).
        num_real: real samples for the real side (default: ``num_samples``).
        feature_network: ``auto`` (the dataset's domain classifier when it declares one,
            Inception otherwise), ``classifier``, ``inception`` or ``none``
            (no feature-space metrics).
        kinds: which of fid, kid, is to compute in the feature space.
        prdc: also precision/recall (k=3) and density/coverage (k=5).
        classifier_path: the domain classifier checkpoint (default
            ``<data_dir>/classifiers/<domain>_<size>.pt``).
        train_classifier_if_missing: train and save it when the file is missing
            (as ``gan-classifier`` would), instead of failing.
        inception_weights: local InceptionV3 weights (see ``metrics/inception.py``).
        data_dir: root of classifiers and cached real statistics.
        kid_subset_size, kid_subsets, is_splits: the usual settings of those metrics.
        batch_size: generation and feature batch size.
        collapse: thresholds of :class:`CollapseDetector` (``min_coverage``,
            ``min_diversity``, ``min_modes_fraction``); all null disables the check.
    """

    data_kinds: ClassVar[tuple[DataKind, ...]] = (DataKind.MIXTURE, DataKind.IMAGES, DataKind.STACKED)
    #: What it reads from the model (``evaluator.require_scores``).
    scores: ClassVar[str] = "samples"
    scores_description: ClassVar[str] = "a generator's samples"

    def __init__(
        self,
        num_samples: int = 2500,
        num_real: int | None = None,
        feature_network: str = "auto",
        kinds: Sequence[str] = ("fid", "kid", "is"),
        prdc: bool = True,
        classifier_path: str | None = None,
        train_classifier_if_missing: bool = True,
        inception_weights: str | None = None,
        data_dir: str = "data",
        kid_subset_size: int = 1000,
        kid_subsets: int = 100,
        is_splits: int = 10,
        batch_size: int = 500,
        collapse: dict[str, float | None] | None = None,
    ) -> None:
        if feature_network not in FEATURE_NETWORKS:
            raise ConfigError(
                f"metrics.feature_network={feature_network!r} is invalid; valid: {list(FEATURE_NETWORKS)}"
            )
        if num_samples < 2:
            raise ConfigError(f"metrics.num_samples={num_samples} is invalid: expected an int >= 2")
        self.requested_feature_network = feature_network
        self.feature_network = feature_network  # resolved against the data by prepare()
        self.num_samples = int(num_samples)
        self.num_real = int(num_real or num_samples)
        self.kinds = tuple(kinds)
        self.prdc = prdc
        self.batch_size = int(batch_size)
        self.data_dir = Path(data_dir)
        self.kid_subset_size = min(int(kid_subset_size), self.num_samples, self.num_real)
        self.kid_subsets, self.is_splits = int(kid_subsets), int(is_splits)
        self.classifier_path = classifier_path
        self.train_classifier_if_missing = train_classifier_if_missing
        self.inception_weights = inception_weights
        self.collapse = dict(collapse or {})
        self.datamodule: Any = None
        self._built = False
        self._device = torch.device("cpu")
        self.feature_net: nn.Module | None = None
        self.class_accuracy: ConditionalClassAccuracy | None = None
        self.intra_fid: IntraClassFID | None = None
        self.real_labels: Tensor | None = None
        self.last_per_class: dict[str, list[float]] = {}
        self.last_collapse_reasons: list[str] = []
        self._warned_unused_labels = False

    # ------------------------------------------------------------ choosing
    def feature_network_for(self, spec: DataSpec) -> str:
        """The feature network this suite uses on ``spec``'s data (``feature_network`` resolved).

        Raises:
            ConfigError: the data is not of a kind this suite scores, or the choice needs a
                domain classifier the data does not declare.
        """
        require_data_kind(
            self,
            spec,
            "Image-translation data is scored by metrics=translation "
            "(L1, PSNR, SSIM, cycle error, FID of translations)",
        )
        choice = self.requested_feature_network
        if spec.kind is DataKind.MIXTURE:
            return "none"  # 2-D samples are their own feature space: the mode protocol needs no network
        if spec.kind is DataKind.STACKED:
            if spec.domain is None:
                raise ConfigError(
                    f"dataset {describe(spec)} declares no domain classifier, so its modes cannot be counted"
                )
            if choice == "classifier":
                # Its domain classifier reads one channel (one digit) at a time: a mode counter, not a
                # feature space for the stacked images.
                raise ConfigError(
                    f"metrics.feature_network=classifier: dataset {describe(spec)} uses its domain "
                    f"classifier ({spec.domain.name}) per channel, to count modes; it is no feature space "
                    "for the stacked images. Use metrics.feature_network=inception, none or auto"
                )
            return "none" if choice == "auto" else choice
        if choice == "auto":
            return "classifier" if spec.domain is not None else "inception"
        if choice == "classifier" and spec.domain is None:
            raise ConfigError(
                no_domain_message(spec, "Use metrics.feature_network=inception (or metrics=none)")
            )
        return choice

    # ------------------------------------------------------------ building
    def prepare(self, datamodule: Any) -> None:
        """Bind to ``datamodule`` (its declaration picks the metrics), load the feature networks
        (failing early on missing files) and compute the real side; again for the same
        datamodule does nothing."""
        if self._built and datamodule is self.datamodule:
            return
        spec = spec_of(datamodule)
        self.feature_network = self.feature_network_for(spec)
        self.datamodule, self.spec, self.kind, self.name = datamodule, spec, spec.kind, spec.name
        self.feature_net, self.suffix = None, ""
        datamodule.prepare_data()
        datamodule.setup("fit")
        if self.kind is DataKind.MIXTURE:
            self.modes = MixtureModes.from_mixture(datamodule)
            detector_modes = self.modes.num_modes
        elif self.kind is DataKind.STACKED:
            assert spec.domain is not None  # feature_network_for refused a stacked dataset without one
            self.mode_classifier = self._domain_classifier()
            self.view = spec.domain.view
            # Each channel is one of the classifier's classes: classes ** channels modes (10^3).
            detector_modes = int(self.mode_classifier.num_classes) ** int(spec.channels or 1)
            self.stacked_modes = ClassHistogram(detector_modes)
        else:
            detector_modes = spec.num_classes
        if self.feature_network != "none":
            self.feature_net = self._build_feature_net()
            self._build_feature_metrics()
        self.detector = CollapseDetector(
            min_coverage=self.collapse.get("min_coverage"),
            min_diversity=self.collapse.get("min_diversity"),
            min_modes_fraction=self.collapse.get("min_modes_fraction"),
            num_modes=detector_modes if self.collapse.get("min_modes_fraction") is not None else None,
        )
        self._device = torch.device("cpu")
        self._built = True

    @property
    def _image_size(self) -> int:
        return int(self.spec.sample_shape[-1])

    def _domain_classifier(self) -> nn.Module:
        assert self.spec.domain is not None
        return domain_classifier(
            self.spec.domain,
            self._image_size,
            data_dir=self.data_dir,
            classifier_path=self.classifier_path,
            train_if_missing=self.train_classifier_if_missing,
        )

    def _build_feature_net(self) -> nn.Module:
        if self.feature_network == "inception":
            from gan_research.metrics.inception import InceptionFeatures

            return InceptionFeatures(self.inception_weights)
        assert self.spec.domain is not None  # feature_network_for refused classifier without a domain
        # The domain's view maps real and generated images alike: one fixed feature space.
        return MappedFeatures(self._domain_classifier(), self.spec.domain.view)

    def _build_feature_metrics(self) -> None:
        net = self.feature_net
        assert net is not None
        self.suffix = "" if net.name == "inception" else f"_{net.name}"
        self.metrics = build_metrics(
            net,
            self.kinds,
            kid_subsets=self.kid_subsets,
            kid_subset_size=self.kid_subset_size,
            is_splits=self.is_splits,
        )
        self.precision_recall = PrecisionRecall(k=3, reset_real_features=False) if self.prdc else None
        self.density_coverage = DensityCoverage(k=5, reset_real_features=False) if self.prdc else None
        num_classes = getattr(net, "num_classes", None)
        per_class = self.feature_network == "classifier" and bool(num_classes)
        self.class_histogram = (
            ClassHistogram(num_classes, self._data_class_distribution(num_classes)) if per_class else None
        )
        # The metrics of class-conditional samplers; used only when sample(n) returns labels.
        self.class_accuracy = ConditionalClassAccuracy(num_classes) if per_class else None
        self.intra_fid = IntraClassFID(num_classes, net.num_features) if per_class else None
        # The real side, once per run: FID statistics through the on-disk cache,
        # features for KID, PRDC and diversity, per-class features for intra-FID.
        real_images, self.real_labels = self._real_set()
        for metric in self.metrics.values():
            if isinstance(metric, FeatureFID):
                path = real_stats_path(
                    self.data_dir / "stats", self.name, "train", net.name, self._image_size, len(real_images)
                )
                load_or_compute_real_stats(metric, real_images.split(self.batch_size), path)
            elif hasattr(metric, "real_features"):
                for chunk in real_images.split(self.batch_size):
                    metric.update(chunk, real=True)
        self.real_features = torch.cat([net(chunk).double() for chunk in real_images.split(self.batch_size)])
        for m in (self.precision_recall, self.density_coverage):
            if m is not None:
                m.update(self.real_features, real=True)
        if self.intra_fid is not None:
            if self.real_labels is None:
                log.warning(
                    "dataset %s yields no labels: no intra-class FID for conditional samplers", self.name
                )
                self.intra_fid = None
            else:
                self.intra_fid.set_real(self.real_features, self.real_labels)

    def _real_set(self) -> tuple[Tensor, Tensor | None]:
        """A fixed evaluation set: the first num_real samples in the datamodule's fixed order,
        and their labels when its batches are ``(x, y)`` (None otherwise)."""
        loader = self.datamodule.val_dataloader()
        chunks, label_chunks, n = [], [], 0
        with torch.no_grad():
            for batch in loader:
                labelled = (
                    isinstance(batch, (tuple, list)) and len(batch) > 1 and isinstance(batch[1], Tensor)
                )
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                chunks.append(x)
                label_chunks.append(batch[1] if labelled else None)
                n += len(x)
                if n >= self.num_real:
                    break
        images = torch.cat(chunks)[: self.num_real]
        labels = (
            torch.cat(label_chunks)[: self.num_real].long()
            if all(y is not None for y in label_chunks)
            else None
        )
        if len(images) < self.num_real:
            log.info(
                "real statistics of %s from all its %d samples (metrics.num_real=%d asks for more)",
                self.name,
                len(images),
                self.num_real,
            )
        return images, labels

    def _data_class_distribution(self, num_classes: int) -> Tensor | None:
        labels = getattr(getattr(self.datamodule, "train_set", None), "y", None)
        if labels is None:
            return None
        counts = torch.bincount(labels.long(), minlength=num_classes).double()
        return counts / counts.sum() if bool((counts > 0).all()) else None

    # ------------------------------------------------------------ evaluating
    @staticmethod
    def _split_sample(out: Tensor | tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor | None]:
        """``(samples, labels or None)`` of what ``sample(n)`` returned."""
        if isinstance(out, Tensor):
            return out, None
        if isinstance(out, (tuple, list)) and len(out) == 2 and all(isinstance(t, Tensor) for t in out):
            x, labels = out
            if labels.ndim != 1 or len(labels) != len(x) or labels.is_floating_point() or labels.is_complex():
                raise ValueError(
                    f"sample(n) returned labels of shape {tuple(labels.shape)} and dtype {labels.dtype} for "
                    f"{len(x)} samples; expected ({len(x)},) integer class indices"
                )
            return x, labels.long()
        raise TypeError(
            f"sample(n) must return a Tensor of samples or a (samples, labels) pair, got {type(out).__name__}"
        )

    def evaluate(self, module: Any, world_size: int = 1) -> dict[str, float]:
        """The metrics of ``module``'s samples (``sample_for_evaluation(n)``: images, or
        ``(images, labels)`` from a class-conditional family), on the EMA generator when there is
        one (``sampling_generator``), in eval mode. Under DDP each of ``world_size`` processes
        generates its share; the metrics' states are synced by torchmetrics."""
        generator = getattr(module, "sampling_generator", None)
        was_training = generator.training if isinstance(generator, nn.Module) else None
        if isinstance(generator, nn.Module):
            generator.eval()
        try:
            return self.evaluate_sampler(
                lambda n: module.sample_for_evaluation(max(1, n // world_size)), module_device(module)
            )
        finally:
            if isinstance(generator, nn.Module) and was_training is not None:
                generator.train(was_training)

    def summary(self) -> dict[str, Any]:
        """What ``gan-eval`` records beside the metrics."""
        out: dict[str, Any] = {"num_samples": self.num_samples, "feature_network": self.feature_network}
        if self.last_per_class:
            out["per_class"] = self.last_per_class
        return out

    @torch.no_grad()
    def evaluate_sampler(self, sample: SampleFn, device: torch.device | str = "cpu") -> dict[str, float]:
        """Generate ``num_samples`` samples with ``sample(n)`` and return every metric as floats.

        ``sample(n)`` returns the samples, or ``(samples, labels)`` for a class-conditional
        generator (labels: the (n,) classes the samples were generated for); with labels, and
        the domain classifier as feature network, the results also hold
        ``val/class_accuracy<suffix>`` and ``val/intra_fid<suffix>``, and
        :attr:`last_per_class` their per-class values (``{}`` otherwise).
        """
        if not self._built:
            raise RuntimeError("MetricSuite.prepare(datamodule) must run before an evaluation")
        self._to(torch.device(device))
        results: dict[str, float] = {}
        self.last_per_class = {}
        for metric in (self.class_accuracy, self.intra_fid):
            if metric is not None:
                metric.reset()  # nothing left over from an evaluation that failed midway
        fake_features = []
        conditional: bool | None = None  # set by the first batch; every batch must agree
        remaining = self.num_samples
        while remaining > 0:
            n = min(self.batch_size, remaining)
            x, labels = self._split_sample(sample(n))
            x = x.float()
            if conditional is None:
                conditional = labels is not None
            elif conditional != (labels is not None):
                raise ValueError("sample(n) returned labels for some batches but not for others")
            remaining -= n
            if self.kind is DataKind.MIXTURE:
                self.modes.update(x)
            if self.kind is DataKind.STACKED:
                from gan_research.metrics.classifier.modes import count_stacked_modes

                modes = count_stacked_modes(self.mode_classifier, self.view(x.clamp(-1, 1)))
                self.stacked_modes.update(modes)
            if self.feature_net is not None:
                x = x.clamp(-1, 1)
                for key, metric in self.metrics.items():
                    if key.split("/")[1].startswith("is"):
                        metric.update(x)
                    else:
                        metric.update(x, real=False)
                features = self.feature_net(x).double()
                fake_features.append(features)
                if self.class_histogram is not None:
                    logits = self.feature_net.logits(x)
                    self.class_histogram.update(logits.argmax(1))
                    if labels is not None:
                        labels = labels.to(x.device)
                        assert self.class_accuracy is not None  # built with the class histogram
                        self.class_accuracy.update(logits, labels)
                        if self.intra_fid is not None:
                            self.intra_fid.update(features, labels)
        if self.kind is DataKind.MIXTURE:
            r = self.modes.compute()
            results.update({f"val/{k}": float(v) for k, v in r.items() if k != "num_samples"})
            self.modes.reset()
        if self.kind is DataKind.STACKED:
            r = self.stacked_modes.compute()
            results["val/modes_covered"] = float(r["classes_covered"])
            results["val/kl_modes"] = float(r["kl_to_data"])
            self.stacked_modes.reset()
        if self.feature_net is not None:
            results.update(self._feature_results(torch.cat(fake_features)))
            if conditional:
                results.update(self._conditional_results())
        if conditional and self.class_accuracy is None and not self._warned_unused_labels:
            self._warned_unused_labels = True
            log.warning(
                "the sampler returns class labels, but class accuracy and intra-FID need labelled image data "
                "and metrics.feature_network=classifier (this run: %s, %s); they are not computed",
                self.name,
                self.feature_network,
            )
        collapsed, reasons = self.detector.check(self._plain(results))
        results["val/collapse"] = float(collapsed)
        self.last_collapse_reasons = reasons
        return results

    def _feature_results(self, fake_features: Tensor) -> dict[str, float]:
        s, out = self.suffix, {}
        for key, metric in self.metrics.items():
            value = metric.compute()
            if isinstance(value, tuple):
                out[key], out[f"{key}_std"] = float(value[0]), float(value[1])
            else:
                out[key] = float(value)
            metric.reset()
        for m in (self.precision_recall, self.density_coverage):
            if m is not None:
                m.update(fake_features, real=False)
                out.update({f"val/{k}{s}": float(v) for k, v in m.compute().items()})
                m.reset()
        real = self.real_features.to(fake_features.device)
        out[f"val/diversity{s}"] = diversity_score(fake_features, real, max_samples=2000)
        if self.class_histogram is not None:
            r = self.class_histogram.compute()
            out["val/classes_covered"] = float(r["classes_covered"])
            out["val/kl_classes"] = float(r["kl_to_data"])
            self.class_histogram.reset()
        return out

    def _conditional_results(self) -> dict[str, float]:
        """Class accuracy and intra-FID of a conditional sampler (nothing without a domain classifier)."""
        s, out = self.suffix, {}
        if self.class_accuracy is not None:
            r = self.class_accuracy.compute()
            self.class_accuracy.reset()
            out[f"val/class_accuracy{s}"] = float(r["accuracy"])
            self.last_per_class[f"class_accuracy{s}"] = r["per_class"].tolist()
        if self.intra_fid is not None:
            try:
                r = self.intra_fid.compute()
            finally:
                self.intra_fid.reset()  # a class too small must not leak samples into the next evaluation
            out[f"val/intra_fid{s}"] = float(r["intra_fid"])
            self.last_per_class[f"intra_fid{s}"] = r["per_class"].tolist()
        return out

    def _plain(self, results: dict[str, float]) -> dict[str, float]:
        """Keys without stage and network suffix, as the collapse detector reads them."""
        plain = {}
        for key, value in results.items():
            name = key.split("/", 1)[-1]
            if getattr(self, "suffix", "") and name.endswith(self.suffix):
                name = name[: -len(self.suffix)]
            plain[name] = value
        if "modes_covered" in plain:
            plain["classes_covered"] = plain["modes_covered"]
        return plain

    def _to(self, device: torch.device) -> None:
        if device == self._device:
            return
        self._device = device
        for obj in self._modules():
            obj.to(device)

    def _modules(self) -> list[nn.Module]:
        mods: list[nn.Module] = []
        if self.feature_net is not None:
            mods += [self.feature_net, *self.metrics.values()]
            optional = (
                self.precision_recall,
                self.density_coverage,
                self.class_histogram,
                self.class_accuracy,
                self.intra_fid,
            )
            mods += [m for m in optional if m is not None]
        if self.kind is DataKind.MIXTURE:
            mods.append(self.modes)
        if self.kind is DataKind.STACKED:
            mods += [self.mode_classifier, self.stacked_modes]
        return mods
