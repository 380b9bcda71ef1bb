"""Metrics of text-to-image generators (StackGAN) on a captioned dataset's validation captions.

StackGAN (Zhang et al. 2017, "StackGAN: Text to Photo-realistic Image Synthesis with Stacked
Generative Adversarial Networks", arXiv:1612.03242, sec. 4, Table 1) reports the Inception score
and a human rank of images generated from the test captions. A human rank cannot be
measured here, and the Inception score of digits says little; what can be measured without a
download is how far the generated images are from the real ones (FID) and whether they show what
their captions ask for, read by networks and measures the framework owns.

Every evaluation generates one image per scored caption and per stage with
``module.generate_from_captions(tokens (N, L), labels (N,)) -> {stage: images (N, C, H, W) in
[-1, 1]}`` (StackGAN: ``stage1`` and ``stage2``; a one-stage model: one entry), in chunks of
``batch_size`` under ``torch.no_grad()``. The captions are the first ``num_samples`` of the
validation loader (``(image, label, tokens, mismatched)`` batches: every image's first caption, the
classes interleaved), the real images are those captions' images. For every stage ``<s>``:

- ``val/<fid>_<s>``: FID (Heusel et al. 2017) of the stage's images against the real images, with
  :class:`~gan_research.metrics.fid.FeatureFID` (float64) in the domain classifier's features
  (``val/fid_digits_<s>``; the dataset's ``spec.domain`` and its ``view``, as TranslationMetrics) or
  Inception's (``val/fid_<s>``), per ``feature_network``; ``none`` skips FID.
- ``val/caption_class_accuracy_<s>``: the share of images that the domain classifier assigns the
  class their caption names (captions that name none are left out), when the dataset declares a
  domain classifier (the digits). Chance: 1/10 on the digits.
- ``val/attribute_agreement_<s>``: over every (caption, attribute) pair where the caption names
  the attribute's bin (``thick``, ``left-leaning``, ``small``, ...), the share whose measured bin
  on the generated image is that bin: :func:`~gan_research.data.captions.measure_attributes`,
  binned by the datamodule's ``attribute_bins`` with the thresholds of the class the *caption*
  names (the image's class when it names none), the same thresholds its captions were written
  with. Per attribute: ``val/<attribute>_agreement_<s>`` (``val/thickness_agreement_stage2``). Only
  on data with ``attribute_bins`` (the digits). Chance: 1/3 per attribute: the bins are terciles
  of each class's real images, so a right-class image whose attributes ignore the caption agrees
  a third of the time (blank images: 0.34 on the digits).

and, once, the same on the real validation images against their own captions, the ceiling:
``val/caption_class_accuracy_real`` (the classifier's accuracy on real images: 0.997 on the
1,797 digits at 32 px with the classifier ``gan-classifier`` trains), and
``val/attribute_agreement_real`` with ``val/<attribute>_agreement_real``. On ``captioned_digits``
these agreements are exactly 1.0 (measured on all 1,797 digits at 16 and 32 px): its captions
were written from the same measure with the same thresholds on the same pixels. They could fall
below 1 only where a value recomputed in another batch lands on the other side of a threshold by
rounding, or for data whose captions were not written from the measure (a folder's free text
names no bins, so there are no attribute keys at all).

**Sizes.** A stage's images whose height and width are not the real images' are resized to them
before anything is measured (the feature networks, the classifier and the attributes, whose bins
were fitted at the real size): bilinear (``align_corners=False``), antialiased when either side
shrinks (:func:`resize_images`). A stacked model's low-resolution stage (StackGAN's stage I)
is so scored in the same feature space and against the same real images as its last stage.
Read its attribute agreement with care: upsampling blurs, and blurred strokes measure thicker. The
real 32 px digits downsampled to 16 px and upsampled back agree 0.34 on thickness (85% measure
"thick"; chance), 0.99 on slant and 0.93 on size, so the thickness agreement of a stage below the
real size says little.

Every process scores all captions, so no metric needs a cross-process sync and every rank gets
the same numbers. There is no collapse check (``last_collapse_reasons`` stays empty).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_research.data.captions import ATTRIBUTES, AttributeBins, caption_requirements
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
from gan_research.metrics.fid import _REAL_STATES, FeatureFID, metric_key
from gan_research.utils.data_spec import DataKind, DataSpec

log = logging.getLogger(__name__)

__all__ = ["REAL", "TextToImageMetrics", "resize_images"]

#: The suffix of the real images' keys (the ceiling), which no stage may take.
REAL = "real"
# Stage names become parts of log keys.
_STAGE_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def resize_images(images: Tensor, size: tuple[int, int]) -> Tensor:
    """``images`` (B, C, H, W) at ``size`` (H', W'): unchanged when already there, else bilinear
    (``align_corners=False``), antialiased when either side shrinks (a plain bilinear downsample
    aliases thin strokes; upsampling has nothing to antialias)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    shrinks = images.shape[-2] > size[0] or images.shape[-1] > size[1]
    return F.interpolate(images, size=tuple(size), mode="bilinear", align_corners=False, antialias=shrinks)


class TextToImageMetrics:
    """The evaluator of text-to-image families (see :mod:`gan_research.metrics.evaluator` for the
    protocol and this module's docstring for every key).

    Args:
        num_samples: captions scored, the first ones of the validation loader (None: the
            validation set's first caption of every image).
        feature_network: FID's feature space: ``auto`` (the domain classifier when the dataset
            declares one, Inception otherwise), ``classifier``, ``inception`` or ``none`` (no FID;
            the class accuracy still uses the domain classifier where there is one).
        classifier_path: the domain classifier checkpoint (default
            ``<data_dir>/classifiers/<domain>_<size>.pt``, shared with the other metrics).
        train_classifier_if_missing: train and cache it when missing (as ``gan-classifier``).
        inception_weights: local InceptionV3 weights (see ``metrics/inception.py``).
        data_dir: root of the classifier cache.
        batch_size: captions per call of ``generate_from_captions``.
    """

    data_kinds: ClassVar[tuple[DataKind, ...]] = (DataKind.CAPTIONED,)
    #: What it reads from the model (``evaluator.require_scores``): images generated from captions.
    scores: ClassVar[str] = "captions"
    scores_description: ClassVar[str] = "images generated from captions (generate_from_captions)"

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
        if num_samples is not None and (
            isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 2
        ):
            # FID needs two samples on each side.
            raise ConfigError(f"metrics.num_samples={num_samples!r} is invalid: expected null or an int >= 2")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"metrics.batch_size={batch_size!r} is invalid: expected an int >= 1")
        self.num_samples = num_samples
        self.classifier_path = classifier_path
        self.train_classifier_if_missing = train_classifier_if_missing
        self.inception_weights = inception_weights
        self.data_dir = Path(data_dir)
        self.batch_size = batch_size
        self.requested_feature_network = feature_network
        self.feature_network = feature_network  # resolved against the data by prepare()
        self.last_collapse_reasons: list[str] = []  # no collapse check
        self.datamodule: Any = None
        self.fid_key: str | None = None
        self.classifier: nn.Module | None = None
        self.attribute_bins: AttributeBins | None = None
        self.stages: list[str] = []
        self._fid: FeatureFID | None = None  # the real side; each stage's FID starts from a copy
        self._stage_fids: dict[str, FeatureFID] = {}
        self._real_scores: dict[str, float] = {}
        self._built = False

    def feature_network_for(self, spec: DataSpec) -> str:
        """The feature network FID uses on ``spec``'s data (``feature_network`` resolved).

        Raises:
            ConfigError: the data is not captioned, or the choice needs a domain classifier the
                data does not declare.
        """
        require_data_kind(
            self,
            spec,
            "It scores images generated from captions (dataset=captioned_digits or captioned_folder); "
            "metrics=default scores noise -> image generators, metrics=translation image translation",
        )
        choice = self.requested_feature_network
        if choice == "auto":
            return "classifier" if spec.domain is not None else "inception"
        if choice == "classifier" and spec.domain is None:
            raise ConfigError(no_domain_message(spec, "Use metrics.feature_network=inception or none"))
        return choice

    # ------------------------------------------------------------ building
    def prepare(self, datamodule: Any) -> None:
        """Bind to ``datamodule``: read its validation captions and images, load the feature
        network and the domain classifier (so a missing one fails here, before training), feed
        FID's real side and score the real images against their captions (the ``_real`` keys).
        Again for the same datamodule does nothing."""
        if self._built and datamodule is self.datamodule:
            return
        spec = spec_of(datamodule)
        self.feature_network = self.feature_network_for(spec)
        self.datamodule, self.spec, self.name = datamodule, spec, spec.name
        datamodule.prepare_data()
        datamodule.setup("fit")
        self.images, self.labels, self.tokens = self._validation()
        self.size = (int(self.images.shape[-2]), int(self.images.shape[-1]))

        self.classifier = None
        if spec.domain is not None:
            net = domain_classifier(
                spec.domain,
                self.size[-1],
                data_dir=self.data_dir,
                classifier_path=self.classifier_path,
                train_if_missing=self.train_classifier_if_missing,
            )
            # The view maps images into the classifier's input, the same map for real and generated.
            self.classifier = MappedFeatures(net, spec.domain.view)
        bins = getattr(datamodule, "attribute_bins", None)
        self.attribute_bins = bins if isinstance(bins, AttributeBins) else None

        self._fid, self.fid_key = None, None
        self._stage_fids, self.stages = {}, []
        if self.feature_network != "none":
            if self.feature_network == "inception":
                from gan_research.metrics.inception import InceptionFeatures

                feature_net: nn.Module = InceptionFeatures(self.inception_weights)
            else:
                assert self.classifier is not None  # feature_network_for refused it without a domain
                feature_net = self.classifier  # one loaded classifier for FID and class accuracy
            self._fid = FeatureFID(feature_net, sync_on_compute=False)
            self.fid_key = metric_key("fid", feature_net.name)

        self.caption_labels, self.caption_bins = self._requirements(datamodule)
        # The class whose thresholds bin an image: the caption's, else its image's.
        self.bin_classes = torch.where(self.caption_labels >= 0, self.caption_labels, self.labels)

        with torch.no_grad():
            if self._fid is not None:
                for chunk in self.images.split(self.batch_size):
                    self._fid.update(chunk.float(), real=True)
            predicted, measured = self._measure_all(self.images, torch.device("cpu"))
        self._real_scores = self._caption_scores(predicted, measured, REAL)
        self._built = True

    def _validation(self) -> tuple[Tensor, Tensor, Tensor]:
        """The first ``num_samples`` validation (images, labels, caption tokens)."""
        images, labels, tokens, n = [], [], [], 0
        # Reading a loader must not move the training RNG stream (exact resume, comparable runs).
        with torch.random.fork_rng(devices=[]):
            for batch in self.datamodule.val_dataloader():
                if len(batch) < 3:
                    raise DataError(
                        f"dataset '{self.name}' gives validation batches of {len(batch)} tensors; "
                        "captioned data gives (image, label, tokens, mismatched)"
                    )
                images.append(batch[0])
                labels.append(batch[1])
                tokens.append(batch[2])
                n += len(batch[0])
                if self.num_samples is not None and n >= self.num_samples:
                    break
        if n < 2:
            raise DataError(f"dataset '{self.name}' has {n} validation captions; the metrics need at least 2")
        cut = slice(0, self.num_samples)
        x, y, t = torch.cat(images)[cut], torch.cat(labels)[cut], torch.cat(tokens)[cut]
        if self.num_samples is not None and len(x) < self.num_samples:
            log.warning(
                "dataset %s has %d validation captions, fewer than metrics.num_samples=%d",
                self.name,
                len(x),
                self.num_samples,
            )
        return x.cpu(), y.cpu().to(torch.int64), t.cpu().to(torch.int64)

    def _requirements(self, datamodule: Any) -> tuple[Tensor, Tensor]:
        """What each caption asks for, decoded with the datamodule's vocabulary and read back
        with :func:`caption_requirements`: labels (N,) and bins (N, A), -1 where unsaid.

        Read only where something checks it (a domain classifier, attribute bins): the digits'
        reader would take a folder caption's "two wings" for the digit 2."""
        n = len(self.tokens)
        unsaid = (torch.full((n,), -1, dtype=torch.int64), torch.full((n, len(ATTRIBUTES)), -1))
        if self.classifier is None and self.attribute_bins is None:
            return unsaid
        vocabulary = datamodule.vocabulary
        said = [caption_requirements(vocabulary.decode(row)) for row in self.tokens]
        labels = torch.tensor([label for label, _ in said], dtype=torch.int64)
        bins = torch.tensor([b for _, b in said], dtype=torch.int64).view(n, len(ATTRIBUTES))
        return labels, bins

    # ------------------------------------------------------------ measuring
    def _measure(self, images: Tensor, classes: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """(predicted classes (B,), attribute bins (B, A)) of images at the real size, on the CPU;
        None where the data has no classifier or no attribute bins."""
        predicted = measured = None
        if self.classifier is not None:
            predicted = self.classifier.logits(images).argmax(dim=1).cpu()
        if self.attribute_bins is not None:
            measured = self.attribute_bins.bin_images(images, classes.to(images.device)).cpu()
        return predicted, measured

    def _measure_all(self, images: Tensor, device: torch.device) -> tuple[Tensor | None, Tensor | None]:
        if self.classifier is not None:
            self.classifier.to(device)
        chunks = [
            self._measure(x.to(device).float(), c)
            for x, c in zip(
                images.split(self.batch_size), self.bin_classes.split(self.batch_size), strict=True
            )
        ]
        return _cat([p for p, _ in chunks]), _cat([m for _, m in chunks])

    def _caption_scores(
        self, predicted: Tensor | None, measured: Tensor | None, suffix: str
    ) -> dict[str, float]:
        """Class accuracy and attribute agreement against what the captions name (module docstring)."""
        results: dict[str, float] = {}
        named = self.caption_labels >= 0
        if predicted is not None and bool(named.any()):
            right = predicted[named] == self.caption_labels[named]
            results[f"val/caption_class_accuracy_{suffix}"] = float(right.double().mean())
        said = self.caption_bins >= 0
        # Counts divided as Python ints: a float64 share (int64 tensors divide in float32).
        if measured is not None and bool(said.any()):
            agree = (measured == self.caption_bins) & said
            results[f"val/attribute_agreement_{suffix}"] = int(agree.sum()) / int(said.sum())
            for a, name in enumerate(ATTRIBUTES):
                if bool(said[:, a].any()):
                    results[f"val/{name}_agreement_{suffix}"] = int(agree[:, a].sum()) / int(said[:, a].sum())
        return results

    def _stage_fid(self, stage: str, device: torch.device) -> FeatureFID | None:
        """The stage's FID: a metric on the shared feature network holding a copy of the real side
        (fed once in ``prepare``), kept for later evaluations."""
        if self._fid is None:
            return None
        fid = self._stage_fids.get(stage)
        if fid is None:
            fid = FeatureFID(self._fid.feature_net, sync_on_compute=False).to(device)
            for key in _REAL_STATES:
                setattr(fid, key, getattr(self._fid, key).detach().clone().to(device))
            self._stage_fids[stage] = fid
        return fid

    def to(self, device: torch.device | str) -> TextToImageMetrics:
        for fid in (self._fid, *self._stage_fids.values()):
            if fid is not None:
                fid.to(device)
        if self.classifier is not None:
            self.classifier.to(device)
        return self

    # ------------------------------------------------------------ evaluating
    @torch.no_grad()
    def evaluate(self, module: Any, world_size: int = 1) -> dict[str, float]:
        """The metrics of ``module.generate_from_captions`` on the scored captions, for every
        stage it returns, and the real images' ceiling. Every process scores all captions, so
        ``world_size`` changes nothing."""
        if not self._built:
            raise RuntimeError("TextToImageMetrics.prepare(datamodule) must run before an evaluation")
        generate = getattr(module, "generate_from_captions", None)
        if not callable(generate):
            raise ConfigError(
                f"metrics=text_to_image scores generate_from_captions(tokens, labels) of text-to-image "
                f"models (StackGAN); {type(module).__name__} has none"
            )
        device = module_device(module)
        self.to(device)
        for fid in self._stage_fids.values():
            fid.reset()  # keeps the real statistics (reset_real_features=False)
        stages: list[str] | None = None
        predicted: dict[str, list[Tensor]] = {}
        measured: dict[str, list[Tensor]] = {}
        for start in range(0, len(self.tokens), self.batch_size):
            end = min(start + self.batch_size, len(self.tokens))
            tokens, labels = self.tokens[start:end].to(device), self.labels[start:end].to(device)
            out = self._checked(generate(tokens, labels), type(module).__name__, end - start, stages)
            if stages is None:
                stages = list(out)
                for stage in stages:
                    self._stage_fid(stage, device)
                    predicted[stage], measured[stage] = [], []
            for stage in stages:
                images = resize_images(out[stage].float().clamp(-1, 1), self.size)
                fid = self._stage_fids.get(stage)
                if fid is not None:
                    fid.update(images, real=False)
                p, m = self._measure(images, self.bin_classes[start:end])
                if p is not None:
                    predicted[stage].append(p)
                if m is not None:
                    measured[stage].append(m)
        assert stages is not None  # prepare() guarantees two captions at least
        results: dict[str, float] = {}
        for stage in stages:
            if stage not in self.stages:
                self.stages.append(stage)
            fid = self._stage_fids.get(stage)
            if fid is not None and self.fid_key is not None:
                results[f"{self.fid_key}_{stage}"] = float(fid.compute())
            results.update(self._caption_scores(_cat(predicted[stage]), _cat(measured[stage]), stage))
        results.update(self._real_scores)
        return results

    @staticmethod
    def _checked(out: Any, who: str, n: int, stages: list[str] | None) -> Mapping[str, Tensor]:
        """``generate_from_captions``'s output, checked: {stage: (n, C, H, W) float images}, the
        same stages in every chunk."""
        if not isinstance(out, Mapping) or not out:
            raise TypeError(
                f"{who}.generate_from_captions must return a non-empty dict stage name -> images "
                f"(N, C, H, W), got {type(out).__name__}"
            )
        for stage, images in out.items():
            if not isinstance(stage, str) or not _STAGE_NAME.fullmatch(stage) or stage == REAL:
                raise ValueError(
                    f"{who}.generate_from_captions: stage name {stage!r} is invalid: expected letters, "
                    f"digits, '_', '.' or '-', and not {REAL!r} (the real images' keys)"
                )
            if not isinstance(images, Tensor) or images.ndim != 4 or len(images) != n:
                shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
                raise ValueError(
                    f"{who}.generate_from_captions: stage {stage!r} gave {shape} for {n} captions; "
                    "expected images (N, C, H, W)"
                )
        if stages is not None and list(out) != stages:
            raise ValueError(
                f"{who}.generate_from_captions returned stages {list(out)} after {stages}; every call "
                "must return the same stages"
            )
        return out

    def summary(self) -> dict[str, Any]:
        """What ``gan-eval`` records beside the metrics."""
        return {
            "num_samples": len(self.tokens) if self._built else self.num_samples,
            "feature_network": self.feature_network,
            "stages": list(self.stages),
        }


def _cat(chunks: Sequence[Tensor | None]) -> Tensor | None:
    """The chunks concatenated, or None when there are none (nothing was measured)."""
    present = [c for c in chunks if c is not None]
    return torch.cat(present) if present else None
