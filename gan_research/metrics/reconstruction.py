"""Metrics of an autoencoder's reconstructions (VQGAN's stage 1, Esser et al. 2021, arXiv:2012.09841):
how well images survive encoding to a discrete code and decoding, and how much of the codebook
the encoder uses.

The evaluator reconstructs held-out images when the datamodule holds some out (``test_set``:
``dataset.test_fraction`` > 0 for the digits) and the validation images otherwise (the digits'
``val_dataloader`` is the training set in a fixed order), with ``module.translate`` (image →
reconstruction, the sampling network in eval mode):

- from :class:`~gan_research.metrics.translation.TranslationMetrics`, the reconstruction
  against its own input: ``val/l1`` (mean |x̂ − x| per pixel in [-1, 1] units), ``val/psnr`` (dB)
  and ``val/ssim`` (images mapped to [0, 1]), and FID of the reconstructions against the
  originals (``val/fid_digits`` in the domain classifier's features, ``val/fid`` with Inception;
  the paper's rFID, Table 2 of Esser et al. is this with Inception on ImageNet's validation set);
- codebook usage over the same images, when the module reports it (``code_usage(images)``, the
  family's declaration of a discrete bottleneck): ``val/codes_used`` (distinct codes of the
  ``n_embed`` used at least once) and ``val/code_perplexity`` (exp of the code distribution's
  entropy: n_embed when every code is used equally, 1 when one code is used everywhere).
  A collapsing codebook (a known failure of VQ training, Dhariwal et al. 2020; Zheng & Vedaldi
  2023) shows here long before it shows in the images.

Every process scores the whole split, so no metric needs a cross-process sync.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from gan_research.errors import DataError
from gan_research.metrics.evaluator import module_device, require_data_kind
from gan_research.metrics.translation import TranslationMetrics
from gan_research.utils.data_spec import DataKind, DataSpec

__all__ = ["ReconstructionMetrics"]


class ReconstructionMetrics(TranslationMetrics):
    """The evaluator of autoencoders on image data (see the module docstring for every key);
    its arguments are those of :class:`~gan_research.metrics.translation.TranslationMetrics`
    (``num_samples``: images reconstructed, None: all of them)."""

    data_kinds: ClassVar[tuple[DataKind, ...]] = (DataKind.IMAGES,)

    def feature_network_for(self, spec: DataSpec) -> str:
        require_data_kind(
            self, spec, "metrics=reconstruction scores an autoencoder's reconstructions of images"
        )
        return super().feature_network_for(spec)

    def prepare(self, datamodule: Any) -> None:
        super().prepare(datamodule)
        # A reconstruction is paired with its own input: L1, PSNR and SSIM apply.
        self.paired = True

    def _pairs(self) -> tuple[Tensor, Tensor]:
        held_out = getattr(self.datamodule, "test_set", None)
        if held_out is None:
            images, _ = super()._pairs()
            return images, images
        images = torch.stack([held_out[i][0] for i in range(len(held_out))])[: self.num_samples]
        if len(images) < 2:
            raise DataError(
                f"dataset '{self.name}' holds out {len(images)} images; the metrics need at least 2"
            )
        return images, images

    def summary(self) -> dict[str, Any]:
        held_out = getattr(self.datamodule, "test_set", None) is not None
        return {**super().summary(), "images": "held out (test_set)" if held_out else "validation"}

    def evaluate(self, module: Any, world_size: int = 1) -> dict[str, float]:
        device = module_device(module)
        results = self.evaluate_translator(module.translate, None, device)
        code_usage = getattr(module, "code_usage", None)
        if code_usage is not None:
            with torch.no_grad():
                usage = code_usage(self.a.to(device))
            results.update({f"val/{k}": float(v) for k, v in usage.items()})
        return results
