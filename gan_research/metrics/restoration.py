"""Metrics of blind image restoration (GFP-GAN, Wang et al. 2021, arXiv:2101.04061), with the
degraded input's scores beside every number.

The evaluator scores ``module.translate`` (degraded → restored) on the datamodule's validation
pairs (``dataset=digits_degraded``, ``dataset=degraded_folder``: same-size ``(degraded, clean)``
pairs) and, once, the degraded inputs themselves: the do-nothing baseline every restoration
must beat, as the bicubic baseline of super-resolution (``metrics/super_resolution.py``).

- From :class:`~gan_research.metrics.translation.TranslationMetrics` on the full images:
  ``val/l1`` (mean |restored - clean| per pixel in [-1, 1] units), ``val/psnr`` (dB) and
  ``val/ssim`` (images mapped to [0, 1], per image then averaged; PSNR is ``inf`` for an exact
  copy), and FID of the restorations against the clean validation images (``val/fid_digits``
  in the domain classifier's features, ``val/fid`` with Inception, per ``feature_network``).
  The paper reports PSNR, SSIM, FID and LPIPS on CelebA-Test (Sec. 4.2, Table 1).
- ``val/lpips`` with ``perceptual_distance: lpips`` (Zhang et al. 2018; its backbone's weights
  are a local file, see ``metrics/perceptual.py``).
- Class and identity preservation, in the domain classifier the dataset declares
  (``spec.domain``; ``identity_network``): ``val/class_agreement``, the share of restorations
  the classifier assigns the class it assigns the clean image; ``val/class_accuracy``, the share
  it assigns the image's true class, when the datamodule knows the validation pairs' classes
  (``val_labels``: the digits); ``val/identity_distance``, the mean cosine distance
  ``1 - cos(φ(restored), φ(clean))`` between the classifier's penultimate features φ. The
  paper's identity metric ("Deg.", Table 1) is the same distance in ArcFace embeddings (Deng et
  al. 2019); a domain classifier's features are its analogue on data without a face model. A
  zero feature vector (all ReLUs off) counts as cosine 0 (torch's ``cosine_similarity`` eps).
- Every key also as ``..._degraded``: the same metric with the degraded input in place of the
  restoration, computed at the first evaluation and reused.

Every process scores the whole validation split (as TranslationMetrics), so no metric needs a
cross-process sync and every rank gets the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_research.errors import ConfigError, DataError
from gan_research.metrics.evaluator import (
    MappedFeatures,
    describe,
    domain_classifier,
    module_device,
    no_domain_message,
    require_data_kind,
)
from gan_research.metrics.super_resolution import PERCEPTUAL_DISTANCES
from gan_research.metrics.translation import TranslationMetrics
from gan_research.utils.data_spec import DataKind, DataSpec

__all__ = [
    "IDENTITY_NETWORKS",
    "RestorationMetrics",
    "class_agreement",
    "identity_distance",
]

#: ``identity_network`` choices: ``auto`` (the domain classifier when the dataset declares one),
#: ``classifier`` (required) or ``none`` (no class or identity preservation).
IDENTITY_NETWORKS = ("auto", "classifier", "none")
#: Suffix of the do-nothing baseline's keys.
DEGRADED = "_degraded"


def class_agreement(predicted: Tensor, reference: Tensor) -> Tensor:
    """Per image, 1.0 where the predicted class equals the reference class, else 0.0: (N,) float64.

    ``predicted``, ``reference``: (N, K) class scores (argmax taken) or (N,) class indices."""
    predicted = predicted.argmax(dim=1) if predicted.ndim == 2 else predicted
    reference = reference.argmax(dim=1) if reference.ndim == 2 else reference
    if predicted.shape != reference.shape or predicted.ndim != 1:
        raise ValueError(
            f"need (N,) classes on both sides, got {tuple(predicted.shape)} and {tuple(reference.shape)}"
        )
    return (predicted.long() == reference.to(predicted.device).long()).double()


def identity_distance(features: Tensor, reference: Tensor) -> Tensor:
    """Cosine distance ``1 - cos(f, g)`` per image of (N, D) features, (N,) float64: 0 for the same
    direction, 1 for orthogonal ones, 2 for opposite ones (GFP-GAN's "Deg." with ArcFace)."""
    if features.shape != reference.shape or features.ndim != 2:
        raise ValueError(
            f"need (N, D) features on both sides, got {tuple(features.shape)} and {tuple(reference.shape)}"
        )
    return 1.0 - F.cosine_similarity(features.double(), reference.to(features.device).double(), dim=1)


class RestorationMetrics(TranslationMetrics):
    """The evaluator of blind restoration (see the module docstring for every key).

    Args:
        perceptual_distance: ``none`` or ``lpips`` (``val/lpips``; needs the LPIPS backbone's
            weights file).
        lpips_net: LPIPS backbone, ``alex`` (the LPIPS paper's default) or ``vgg``.
        lpips_weights: the backbone's ImageNet weights file (or its environment variable, or
            the torch hub cache; see ``metrics/perceptual.py``).
        identity_network: the network of class and identity preservation, one of
            :data:`IDENTITY_NETWORKS`: ``auto`` uses the dataset's domain classifier when it
            declares one (the digits) and skips these metrics otherwise.
        The others: those of :class:`~gan_research.metrics.translation.TranslationMetrics`.
    """

    data_kinds: ClassVar[tuple[DataKind, ...]] = (DataKind.PAIRED,)

    def __init__(
        self,
        num_samples: int | None = None,
        feature_network: str = "auto",
        classifier_path: str | None = None,
        train_classifier_if_missing: bool = True,
        inception_weights: str | None = None,
        data_dir: str = "data",
        batch_size: int = 64,
        perceptual_distance: str = "none",
        lpips_net: str = "alex",
        lpips_weights: str | None = None,
        identity_network: str = "auto",
    ) -> None:
        # Spelt out (not **kwargs): gan-eval checks settings against this signature.
        super().__init__(
            num_samples=num_samples,
            feature_network=feature_network,
            classifier_path=classifier_path,
            train_classifier_if_missing=train_classifier_if_missing,
            inception_weights=inception_weights,
            data_dir=data_dir,
            batch_size=batch_size,
        )
        if perceptual_distance not in PERCEPTUAL_DISTANCES:
            raise ConfigError(
                f"metrics.perceptual_distance={perceptual_distance!r} is invalid; valid: "
                f"{list(PERCEPTUAL_DISTANCES)}"
            )
        if identity_network not in IDENTITY_NETWORKS:
            raise ConfigError(
                f"metrics.identity_network={identity_network!r} is invalid; valid: {list(IDENTITY_NETWORKS)}"
            )
        self.perceptual_distance = perceptual_distance
        self.lpips_net = lpips_net
        self.lpips_weights = lpips_weights
        self.requested_identity_network = identity_network
        self.identity_network = identity_network  # resolved against the data by prepare()
        self.lpips: Any = None
        self.identity_net: nn.Module | None = None
        self.labels: Tensor | None = None
        self._classifier: nn.Module | None = None
        self._clean: tuple[torch.device, Tensor, Tensor] | None = None
        self._degraded: dict[str, float] | None = None

    def feature_network_for(self, spec: DataSpec) -> str:
        require_data_kind(
            self,
            spec,
            "metrics=restoration scores (degraded, clean) pairs (dataset=digits_degraded or "
            "degraded_folder); use metrics=translation for unpaired translation",
        )
        return super().feature_network_for(spec)

    def identity_network_for(self, spec: DataSpec) -> str:
        """``classifier`` or ``none``: ``identity_network`` resolved against ``spec``'s domain."""
        choice = self.requested_identity_network
        if choice == "auto":
            return "classifier" if spec.domain is not None else "none"
        if choice == "classifier" and spec.domain is None:
            raise ConfigError(
                f"metrics.identity_network=classifier needs a dataset with a domain classifier; dataset "
                f"{describe(spec)} has none. Use metrics.identity_network=auto or none"
            )
        return choice

    # ------------------------------------------------------------ building
    def prepare(self, datamodule: Any) -> None:
        """As :meth:`TranslationMetrics.prepare`, for same-size (degraded, clean) pairs; loads the
        domain classifier of class and identity preservation (once, shared with FID when it
        uses it) and LPIPS when asked, so a missing file fails here, before training."""
        already = self._built and datamodule is self.datamodule
        if not already:
            self._classifier = None
        super().prepare(datamodule)
        if already:
            return
        spec = self.spec
        a_shape, b_shape = tuple(spec.a_shape), tuple(spec.sample_shape)
        if a_shape != b_shape:
            hint = (
                "use metrics=super_resolution for low- to high-resolution pairs"
                if a_shape[-1] < b_shape[-1]
                else "the degraded input must have the clean image's shape"
            )
            raise ConfigError(
                f"metrics=restoration scores a degraded input in place of its restoration, so both "
                f"must have one shape, but dataset '{spec.name}' has pairs {a_shape} -> {b_shape}; {hint}"
            )
        self.identity_network = self.identity_network_for(spec)
        self.identity_net = (
            self._classifier_net(int(self.b.shape[-1])) if self.identity_network == "classifier" else None
        )
        self.labels = None
        labels = getattr(datamodule, "val_labels", None) if self.identity_net is not None else None
        if labels is not None:
            labels = torch.as_tensor(labels)
            if labels.ndim != 1 or labels.is_floating_point() or len(labels) < len(self.a):
                raise DataError(
                    f"dataset '{self.name}' gives val_labels of shape {tuple(labels.shape)} ({labels.dtype}) "
                    f"for {len(self.a)} validation pairs; expected one integer class per pair"
                )
            self.labels = labels[: len(self.a)].long()
        if self.perceptual_distance == "lpips" and self.lpips is None:
            from gan_research.metrics.perceptual import LPIPS

            self.lpips = LPIPS(net_type=self.lpips_net, weights=self.lpips_weights)
        self._clean = None
        self._degraded = None

    def _classifier_net(self, image_size: int) -> nn.Module:
        """The domain classifier seen through the domain's view (built once per datamodule)."""
        if self._classifier is None:
            domain = self.spec.domain
            if domain is None:
                raise ConfigError(
                    no_domain_message(self.spec, "Use metrics.feature_network=inception or none")
                )
            net = domain_classifier(
                domain,
                image_size,
                data_dir=self.data_dir,
                classifier_path=self.classifier_path,
                train_if_missing=self.train_classifier_if_missing,
            )
            self._classifier = MappedFeatures(net, domain.view)
        return self._classifier

    def _feature_net(self, image_size: int) -> nn.Module:
        # FID in the classifier's features and the identity metrics share one loaded classifier.
        if self.feature_network == "classifier":
            return self._classifier_net(image_size)
        return super()._feature_net(image_size)

    def summary(self) -> dict[str, Any]:
        return {
            **super().summary(),
            "perceptual_distance": self.perceptual_distance,
            "identity_network": self.identity_network,
        }

    # ------------------------------------------------------------ evaluating
    def _identity(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(penultimate features (N, D) float64, predicted classes (N,)) of images in [-1, 1]."""
        net = self.identity_net
        assert net is not None
        return net(images).double(), net.logits(images).argmax(dim=1)

    def _clean_side(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """The clean images' features and classes, computed once per device (the restorations'
        are computed there too, so an exact restoration scores exactly)."""
        if self._clean is None or self._clean[0] != device:
            feats, classes = [], []
            for b in self.b.split(self.batch_size):
                f, c = self._identity(b.to(device).float())
                feats.append(f)
                classes.append(c)
            self._clean = (device, torch.cat(feats), torch.cat(classes))
        return self._clean[1], self._clean[2]

    @torch.no_grad()
    def _score(self, restore: Callable[[Tensor], Tensor], device: torch.device) -> dict[str, float]:
        """The metrics of ``restore`` (degraded → restored, images in [-1, 1]), each image restored once."""
        clean_features = clean_classes = None
        if self.identity_net is not None:
            self.identity_net.to(device)
            clean_features, clean_classes = self._clean_side(device)
        if self.lpips is not None:
            self.lpips.to(device)
        chunks_b = self.b.split(self.batch_size)
        lpips, features, classes = [], [], []
        calls = 0

        def scored(a: Tensor) -> Tensor:
            # evaluate_translator restores the validation inputs once each, chunk by chunk in
            # order (no translate_back): the extra metrics ride along instead of restoring twice.
            nonlocal calls
            out = restore(a)
            restored = out.float().clamp(-1, 1)
            if self.lpips is not None:
                clean = chunks_b[calls].to(device).float()
                lpips.append(self.lpips(restored, clean).reshape(-1).double())
            if self.identity_net is not None:
                f, c = self._identity(restored)
                features.append(f)
                classes.append(c)
            calls += 1
            return out

        results = self.evaluate_translator(scored, None, device)
        if calls != len(chunks_b):
            raise RuntimeError(f"expected {len(chunks_b)} restored chunks, got {calls}")
        if lpips:
            results["val/lpips"] = float(torch.cat(lpips).mean())
        if clean_features is not None and clean_classes is not None:
            predicted = torch.cat(classes)
            results["val/class_agreement"] = float(class_agreement(predicted, clean_classes).mean())
            if self.labels is not None:
                results["val/class_accuracy"] = float(class_agreement(predicted, self.labels).mean())
            results["val/identity_distance"] = float(
                identity_distance(torch.cat(features), clean_features).mean()
            )
        return results

    def evaluate(self, module: Any, world_size: int = 1) -> dict[str, float]:
        """The metrics of ``module.translate`` and of the degraded inputs (computed once). Every
        process scores the whole validation split, so ``world_size`` changes nothing."""
        device = module_device(module)
        results = self._score(module.translate, device)
        if self._degraded is None:
            baseline = self._score(lambda a: a, device)
            self._degraded = {f"{key}{DEGRADED}": value for key, value in baseline.items()}
        results.update(self._degraded)
        return results
