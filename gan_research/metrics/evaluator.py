"""What an evaluator is, and the pieces every evaluator shares.

An *evaluator* measures a model on a dataset. The periodic evaluation callback
(``callbacks/evaluation.py``) and ``gan-eval`` (``evaluate.py``) both build one from the
``evaluator`` node of the ``metrics`` config group and use only this protocol:

- ``prepare(datamodule)``: bind to the run's data, refuse data it cannot score (one
  :class:`~gan_research.errors.ConfigError`), and load its feature networks and real side
  now, so a missing weights file fails before training or before a checkpoint is scored;
- ``evaluate(module, world_size=1) -> dict[str, float]``: the metrics of ``module`` (a family's
  LightningModule, or anything with the same sampling methods) as ``val/...`` keys;
- ``summary() -> dict[str, Any]``: what ``gan-eval`` records beside the metrics
  (``num_samples``, ``feature_network``, and e.g. ``per_class``);
- ``last_collapse_reasons``: why the last evaluation flagged a collapse (empty when it did not);
- ``data_kinds``: the :class:`~gan_research.utils.data_spec.DataKind`s it scores, read from the
  class alone so an entry point can say which metrics option fits a run;
- ``scores`` (and ``scores_description``, the same in words for messages): what it reads from
  the model, matched against the family's
  ``evaluation_output``: ``samples`` (``sample_for_evaluation(n)`` → samples or (samples, labels):
  noise → sample families) or ``translations`` (→ (input, output, target), or ``translate``:
  image-to-image families). :func:`require_scores` refuses a mismatch before anything runs.

An evaluator keeps no training state: everything it holds is rebuilt by ``prepare`` (the real
side's statistics are cached on disk), so it adds nothing to checkpoints.

What to measure is read from the dataset's declaration (``datamodule.spec``), never from its
name: the kind picks the protocol, and ``spec.domain`` names the domain classifier, how to
train it once and the view that maps images into its input.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from gan_research.errors import ConfigError
from gan_research.utils.data_spec import DataKind, DataSpec, Domain

log = logging.getLogger(__name__)

#: The feature-network choices of every evaluator (``metrics.feature_network``).
FEATURE_NETWORKS = ("auto", "classifier", "inception", "none")


@runtime_checkable
class Evaluator(Protocol):
    """The protocol the evaluation callback and ``gan-eval`` use (see the module docstring)."""

    data_kinds: ClassVar[tuple[DataKind, ...]]
    feature_network: str
    last_collapse_reasons: list[str]

    def prepare(self, datamodule: Any) -> None: ...

    def evaluate(self, module: Any, world_size: int = 1) -> dict[str, float]: ...

    def summary(self) -> dict[str, Any]: ...


def spec_of(datamodule: Any) -> DataSpec:
    """The datamodule's declaration; an object without one cannot be scored."""
    spec = getattr(datamodule, "spec", None)
    if not isinstance(spec, DataSpec):
        raise ConfigError(
            f"{type(datamodule).__name__} declares no DataSpec (`spec`); the metrics read what the data "
            "is from it (see gan_research/utils/data_spec.py)"
        )
    return spec


def describe(spec: DataSpec) -> str:
    """``'x' (images, unlabelled)``: a dataset as error messages name it, from its declaration."""
    if spec.translation:
        labels = ""
    elif spec.num_classes is None:
        labels = ", unlabelled"
    else:
        unit = "modes" if spec.kind is DataKind.MIXTURE else "classes"
        labels = f", {spec.num_classes} {unit}"
    return f"'{spec.name}' ({spec.kind.describe()}{labels})"


def require_data_kind(evaluator: Any, spec: DataSpec, alternative: str) -> None:
    """Refuse data ``evaluator`` does not score, naming what it scores and ``alternative``."""
    kinds: tuple[DataKind, ...] = type(evaluator).data_kinds
    if spec.kind not in kinds:
        scored = ", ".join(k.describe() for k in kinds)
        raise ConfigError(
            f"{type(evaluator).__name__} scores {scored}; dataset {describe(spec)} is not one of them. "
            f"{alternative}"
        )


def no_domain_message(spec: DataSpec, fix: str) -> str:
    """The error for ``feature_network=classifier`` on data that declares no domain classifier."""
    return (
        f"metrics.feature_network=classifier needs a dataset with a domain classifier; dataset "
        f"{describe(spec)} has none. {fix}"
    )


def module_device(module: Any) -> torch.device:
    """Where ``module`` computes: its ``device`` (LightningModule), else its first parameter's."""
    device = getattr(module, "device", None)
    if isinstance(device, torch.device):
        return device
    for param in module.parameters() if isinstance(module, nn.Module) else ():
        return param.device
    return torch.device("cpu")


def domain_classifier(
    domain: Domain,
    image_size: int,
    *,
    data_dir: str | Path,
    classifier_path: str | None = None,
    train_if_missing: bool = True,
) -> nn.Module:
    """The domain's classifier at ``image_size``: loaded from ``classifier_path`` (default
    ``<data_dir>/classifiers/<domain>_<size>.pt``), trained there once on
    ``domain.labelled_data(image_size)`` when missing (as ``gan-classifier`` would).

    The datamodule it trains on is the domain's to build; this function only asks for it.
    """
    from gan_research.metrics.classifier.checkpoint import (
        default_classifier_path,
        load_classifier,
        save_classifier,
    )
    from gan_research.metrics.classifier.training import train_classifier

    path = Path(classifier_path or default_classifier_path(data_dir, domain.name, image_size))
    if not path.is_file() and train_if_missing:
        log.info("training the %s domain classifier once; it is cached at %s", domain.name, path)
        model, accuracy = train_classifier(domain.labelled_data(image_size))
        save_classifier(model, path, accuracy, domain.name)
    return load_classifier(path, dataset=domain.name)


class MappedFeatures(nn.Module):
    """A feature network applied after a fixed image map (``net(fn(x))``): the domain's view.

    Keeps the network's name, sizes and ``logits`` (through the same map), so the map is part of
    one fixed feature space for real and generated images alike, and the FID is a distance in it.
    """

    def __init__(self, net: nn.Module, fn: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.net, self.fn = net, fn
        self.name: str = net.name
        self.num_features: int = net.num_features
        num_classes = getattr(net, "num_classes", None)
        if num_classes is not None:
            self.num_classes: int = num_classes

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.fn(x))

    def logits(self, x: Tensor) -> Tensor:
        return self.net.logits(self.fn(x))


def require_scores(evaluator: Any, module: Any, fix: str) -> None:
    """Raise ConfigError when ``evaluator`` reads another kind of output than ``module`` makes
    (``scores`` vs ``evaluation_output``; either undeclared: no check). ``fix`` says what fits.
    Each side describes its own output in words (``scores_description``,
    ``evaluation_output_description``), so a new kind of output needs no table here."""
    wanted, made = getattr(evaluator, "scores", None), getattr(module, "evaluation_output", None)
    if wanted is None or made is None or wanted == made:
        return
    wanted_words = getattr(evaluator, "scores_description", wanted)
    made_words = getattr(module, "evaluation_output_description", made)
    raise ConfigError(
        f"{type(evaluator).__name__} scores {wanted_words}, but {type(module).__name__} "
        f"makes {made_words}; {fix}"
    )
