"""The GPU fast path: what makes small-GAN training fast on an accelerator, as one callback.

Each option is off by default (the callback is then a no-op) and ``perf=gpu`` turns
them on together with the settings that live elsewhere (``trainer.benchmark`` for
cuDNN autotuning, fused Adam in the optimiser partials, bf16 autocast, a progress
bar that reads metrics only on logging steps):

- ``data_on_device``: in-memory datasets (digits, MNIST-family, CIFAR-10, the 2-D
  mixtures, stacked digits, image folders read into RAM) are copied to the device
  once; a batch is then gathered there, with no host-to-device copy per step. The
  batch indices are sent from pinned memory without blocking, so the gather does not
  synchronise the host with the device either.
- ``channels_last``: G's and D's 4-D weights in NHWC, the layout tensor cores run
  convolutions in (cuDNN then returns NHWC activations and converts the inputs).
- ``compile``: ``torch.compile`` of the listed networks, in place (``nn.Module.compile``),
  so parameter names, checkpoints and the EMA copy are unchanged.
- ``matmul_precision``: ``torch.set_float32_matmul_precision`` (``high``: TF32 for the
  fp32 matrix products left outside autocast).
"""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
import torch

from gan_research.data.base import InMemoryDataset
from gan_research.errors import ConfigError

log = logging.getLogger(__name__)

COMPILABLE = ("generator", "discriminator")
MATMUL_PRECISIONS = ("highest", "high", "medium")


class FastPath(pl.Callback):
    """Device-resident data, channels_last and ``torch.compile`` for G and D.

    Args:
        data_on_device: hold an in-memory training set on the training device.
        channels_last: NHWC weights for G and D (and NHWC device-resident images).
        compile: networks to compile: a subset of ``[generator, discriminator]``.
        compile_mode: ``torch.compile`` mode (null: the default; ``max-autotune``, ...).
        compile_backend: ``torch.compile`` backend (``inductor``; ``aot_eager`` traces without
            generating kernels, to tell a compiler problem from a model one).
        matmul_precision: null (leave torch's setting) or highest | high | medium.
    """

    def __init__(
        self,
        data_on_device: bool = False,
        channels_last: bool = False,
        compile: list[str] | tuple[str, ...] = (),
        compile_mode: str | None = None,
        compile_backend: str = "inductor",
        matmul_precision: str | None = None,
    ) -> None:
        unknown = [name for name in compile if name not in COMPILABLE]
        if unknown:
            raise ConfigError(
                f"callbacks.fast_path.compile={list(compile)} names {unknown}; "
                f"valid entries: {list(COMPILABLE)}"
            )
        if matmul_precision is not None and matmul_precision not in MATMUL_PRECISIONS:
            raise ConfigError(
                f"callbacks.fast_path.matmul_precision={matmul_precision!r} is invalid; valid: "
                f"null or one of {list(MATMUL_PRECISIONS)}"
            )
        self.data_on_device = bool(data_on_device)
        self.channels_last = bool(channels_last)
        self.compile = tuple(compile)
        self.compile_mode = compile_mode
        self.compile_backend = compile_backend
        self.matmul_precision = matmul_precision

    def check(self, model: Any, datamodule: Any) -> None:
        """Refuse combinations that cannot work, before the run writes anything."""
        allowed = tuple(getattr(model, "compilable", COMPILABLE))
        refused = [name for name in self.compile if name not in allowed]
        if refused:
            raise ConfigError(
                f"callbacks.fast_path.compile={list(self.compile)}: {type(model).__name__} cannot compile "
                f"{refused} (see its `compilable`); it can compile {list(allowed) or 'nothing'}"
            )
        if "discriminator" in self.compile and getattr(model.objective, "regularizers", None):
            raise ConfigError(
                f"callbacks.fast_path.compile includes the discriminator, but loss regularisers "
                f"{sorted(model.objective.regularizers)} differentiate D twice (create_graph), which "
                "compiled modules do not support; compile only [generator] with this loss"
            )
        if self.data_on_device and datamodule.num_workers > 0:
            raise ConfigError(
                f"callbacks.fast_path.data_on_device=true needs dataset.num_workers=0 (got "
                f"{datamodule.num_workers}): worker processes cannot index device memory"
            )

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.matmul_precision is not None:
            torch.set_float32_matmul_precision(self.matmul_precision)
        if self.channels_last:
            # Before the strategy moves the module: .to(device) keeps the memory format.
            for name in COMPILABLE:
                getattr(pl_module, name).to(memory_format=torch.channels_last)
        for name in self.compile:
            getattr(pl_module, name).compile(mode=self.compile_mode, backend=self.compile_backend)
        if self.data_on_device:
            self._move_data(trainer)

    def _move_data(self, trainer: pl.Trainer) -> None:
        device = trainer.strategy.root_device
        if device.type == "cpu":
            return  # already there
        datamodule = trainer.datamodule
        datamodule.setup("fit")
        dataset = datamodule.train_set
        if not isinstance(dataset, InMemoryDataset):
            raise ConfigError(
                f"callbacks.fast_path.data_on_device=true needs a dataset held in memory; dataset "
                f"'{datamodule.name}' reads {type(dataset).__name__} samples from disk per batch"
            )
        memory_format = torch.channels_last if self.channels_last else torch.preserve_format
        dataset.to(device, memory_format=memory_format)
        log.info("training set (%d samples) held on %s", len(dataset), device)
