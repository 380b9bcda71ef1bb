"""Sample grids from the fixed noise batch, as PNGs in the run directory and W&B images.

Images are tiled with torchvision's ``make_grid``; 2-D samples are drawn as a
scatter over real data (the picture in which mode collapse on ring8/grid25 is
visible at a glance). Rank 0 writes; files are ``samples/step_NNNNNNN.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities.rank_zero import rank_zero_only
from torch import Tensor
from torchvision.utils import save_image


class SampleGrid(pl.Callback):
    """Save a grid of samples every ``every_n_steps`` generator steps and at the end of training.

    Args:
        dirpath: where PNGs go (``${paths.output_dir}/samples``).
        every_n_steps: interval in generator steps; 0 saves only at the end.
        nrow: images per row of an image grid.
        max_points: at most this many real points drawn under a 2-D scatter.
    """

    def __init__(self, dirpath: str, every_n_steps: int = 200, nrow: int = 8, max_points: int = 2000) -> None:
        if every_n_steps < 0:
            raise ValueError(f"every_n_steps must be >= 0, got {every_n_steps}")
        self.dirpath = Path(dirpath)
        self.every_n_steps = every_n_steps
        self.nrow = nrow
        self.max_points = max_points
        self._last_saved_step = -1

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        step = trainer.global_step
        if self.every_n_steps and step % self.every_n_steps == 0:
            self.save(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.save(trainer, pl_module)

    @rank_zero_only
    def save(self, trainer: pl.Trainer, pl_module: Any) -> Path | None:
        step = trainer.global_step
        if step == self._last_saved_step:
            return None
        self._last_saved_step = step
        samples, nrow = pl_module.grid_samples()
        samples = samples.float().cpu()
        path = self.dirpath / f"step_{step:07d}.png"
        self.dirpath.mkdir(parents=True, exist_ok=True)
        # Family-specific grids (latent traversals, style mixing) go to their own folders, so
        # samples/step_*.png stays the one sample grid per step that run readers look for.
        for name, (grid, grid_nrow) in pl_module.extra_grids().items():
            extra_path = self.dirpath / name / f"step_{step:07d}.png"
            extra_path.parent.mkdir(parents=True, exist_ok=True)
            _save_grid(grid.float().cpu(), extra_path, grid_nrow)
            self._log_image(trainer, name, extra_path, step)
        if samples.dim() == 4:
            _save_grid(samples, path, nrow or self.nrow)
        elif samples.dim() == 2 and samples.shape[1] == 2:
            self._scatter(samples, self._real_points(trainer), path, step)
        else:
            return None
        self._log_image(trainer, "samples", path, step)
        return path

    @staticmethod
    def _log_image(trainer: pl.Trainer, key: str, path: Path, step: int) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key=key, images=[str(path)], step=step, caption=[f"step {step}"])

    def _real_points(self, trainer: pl.Trainer) -> Tensor | None:
        train_set = getattr(trainer.datamodule, "train_set", None)
        data = getattr(train_set, "x", None)
        if isinstance(data, Tensor) and data.dim() == 2:
            return data[: self.max_points]
        return None

    @staticmethod
    def _scatter(samples: Tensor, real: Tensor | None, path: Path, step: int) -> None:
        import matplotlib

        matplotlib.use("Agg")  # no display on cluster nodes and CI
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
        if real is not None:
            ax.scatter(real[:, 0], real[:, 1], s=4, c="tab:blue", alpha=0.3, label="real")
        ax.scatter(samples[:, 0], samples[:, 1], s=4, c="tab:red", alpha=0.6, label="generated")
        ax.set_title(f"step {step}")
        ax.set_aspect("equal")
        ax.legend(loc="upper right", markerscale=3)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)


def _save_grid(images: Tensor, path: Path, nrow: int) -> None:
    # Generators end in tanh: map [-1, 1] to [0, 1] for the PNG.
    save_image(images.clamp(-1, 1) * 0.5 + 0.5, path, nrow=nrow, padding=2, pad_value=1.0)
