"""A bare Lightning Trainer for family tests that fit a module directly (no run directory)."""

from __future__ import annotations

import pytorch_lightning as pl


def fit(
    model: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    steps: int = 2,
    ckpt_path: str | None = None,
) -> pl.Trainer:
    """``steps`` generator steps on CPU, nothing written, from ``ckpt_path`` when given."""
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    return trainer
