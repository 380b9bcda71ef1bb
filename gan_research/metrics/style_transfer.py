"""Metrics of feed-forward style transfer: the paper's own loss terms on held-out content images.

Johnson et al. 2016 report the style and content losses their network reaches compared with
Gatys et al.'s optimisation (§4.1, Figure 5); here every evaluation stylises the first
``num_samples`` images of the datamodule's ``val_dataloader()`` with the sampling generator (eval
mode) and averages the family's unweighted terms (``module.style_terms(content, stylised)``):
``val/content_loss``, ``val/style_loss`` and ``val/tv``. They are measured in the run's own
feature network (the ``perceptual`` group), so they compare runs with the same feature network.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from gan_research.errors import ConfigError, DataError
from gan_research.metrics.evaluator import module_device, require_data_kind, spec_of
from gan_research.utils.data_spec import DataKind


class StyleTransferMetrics:
    """The evaluator of style transfer (see :mod:`gan_research.metrics.evaluator` for the protocol).

    Args:
        num_samples: content images scored (the first ones of ``val_dataloader()``).
        batch_size: images per forward pass.
    """

    data_kinds: ClassVar[tuple[DataKind, ...]] = (DataKind.IMAGES,)
    #: What it reads from the model (``evaluator.require_scores``).
    scores: ClassVar[str] = "translations"
    scores_description: ClassVar[str] = "translations of input images"

    def __init__(self, num_samples: int = 256, batch_size: int = 64) -> None:
        for key, value, low in (("num_samples", num_samples, 1), ("batch_size", batch_size, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"metrics.{key}={value!r} is invalid: expected an int >= {low}")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.feature_network = "perceptual"  # the run's own feature network
        self.last_collapse_reasons: list[str] = []
        self.content: Tensor | None = None
        self.datamodule: Any = None

    def prepare(self, datamodule: Any) -> None:
        """Take the first ``num_samples`` content images of the validation loader."""
        if self.content is not None and datamodule is self.datamodule:
            return
        spec = spec_of(datamodule)
        require_data_kind(self, spec, "Use the metrics option of its kind of data")
        datamodule.prepare_data()
        datamodule.setup("fit")
        chunks, have = [], 0
        # Reading a loader must not move the training RNG stream (exact resume, comparable runs).
        with torch.random.fork_rng(devices=[]):
            for batch in datamodule.val_dataloader():
                chunks.append(batch[0])
                have += len(batch[0])
                if have >= self.num_samples:
                    break
        if not chunks:
            raise DataError(f"dataset '{spec.name}' yielded no validation images")
        self.content = torch.cat(chunks)[: self.num_samples]
        self.datamodule = datamodule

    def summary(self) -> dict[str, Any]:
        return {"num_samples": 0 if self.content is None else len(self.content)}

    @torch.no_grad()
    def evaluate(self, module: Any, world_size: int = 1) -> dict[str, float]:
        """Mean unweighted loss terms of ``module.translate`` on the content images (every process
        scores the same images, so ``world_size`` changes nothing)."""
        if self.content is None:
            raise RuntimeError("StyleTransferMetrics.prepare(datamodule) must run before an evaluation")
        if not hasattr(module, "style_terms"):
            raise ConfigError(
                f"metrics=style_transfer scores style transfer models; {type(module).__name__} has "
                "no style_terms"
            )
        device = module_device(module)
        totals: dict[str, float] = {}
        for chunk in self.content.split(self.batch_size):
            chunk = chunk.to(device)
            terms = module.style_terms(chunk, module.translate(chunk))
            for key, value in terms.items():
                totals[key] = totals.get(key, 0.0) + float(value) * len(chunk)
        n = len(self.content)
        return {
            "val/content_loss": totals["content"] / n,
            "val/style_loss": totals["style"] / n,
            "val/tv": totals["tv"] / n,
        }
