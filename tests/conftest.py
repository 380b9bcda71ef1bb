"""Shared fixtures: compose the real configs with tiny, CPU-only, offline overrides."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from omegaconf import DictConfig, open_dict

from gan_research.config import compose_run

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

# Overrides that make any composition a seconds-long CPU run.
TINY = [
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.log_every_n_steps=1",
    "schedule.max_steps=3",
    "callbacks.progress_bar=null",
    "callbacks.model_checkpoint.every_n_train_steps=2",
    "callbacks.samples.every_n_steps=2",
    "logger=none",
    "metrics=none",
]
# Small widths for the image networks, per model option.
TINY_MODEL = {
    "dcgan": ["model.generator.ngf=8", "model.discriminator.ndf=8", "dataset.batch_size=8"],
    "mlp": ["model.generator.hidden_dim=16", "model.discriminator.hidden_dim=16", "dataset.batch_size=32"],
    "seed_fashion": ["dataset.batch_size=4"],
    "cgan": ["model.generator.ngf=8", "model.discriminator.ndf=8", "dataset.batch_size=8"],
    "cgan_projection": ["model.generator.ngf=8", "model.discriminator.ndf=8", "dataset.batch_size=8"],
    "acgan": ["model.generator.ngf=8", "model.discriminator.ndf=8", "dataset.batch_size=8"],
    "sagan": ["model.generator.ngf=8", "model.discriminator.ndf=8", "dataset.batch_size=8"],
    "sgan": [
        "model.generator.ngf=8",
        "model.discriminator.ndf=8",
        "dataset.batch_size=8",
        "dataset.test_fraction=0.2",
    ],
    # 32 px digit tasks: a U-Net of 5 levels, a 2-layer PatchGAN on the (edges, digit) pair.
    "pix2pix": [
        "dataset=digits_edges",
        "model.generator.num_downs=5",
        "model.generator.ngf=8",
        "model.discriminator.input_channels=2",
        "model.discriminator.n_layers=2",
        "model.discriminator.ndf=8",
        "dataset.batch_size=4",
    ],
    "cyclegan": [
        "dataset=digits_inverted",
        "model.generator.a_to_b.ngf=8",
        "model.generator.a_to_b.n_blocks=2",
        "model.discriminator.d_a.ndf=8",
        "model.discriminator.d_a.n_layers=2",
        "dataset.batch_size=4",
    ],
}


def compose_config(overrides: list[str], output_dir: Path, *, tiny: bool = True) -> DictConfig:
    """Compose conf/train.yaml as `gan-train` would, with the run directory at ``output_dir``."""
    cfg = compose_run((TINY if tiny else []) + list(overrides), output_dir)
    with open_dict(cfg):
        cfg.paths.data_dir = str(output_dir / "data")
        cfg.name = "test"
    return cfg


@pytest.fixture
def make_cfg(tmp_path: Path):
    """Factory: make_cfg("model=mlp", "dataset=ring8") -> composed tiny config in tmp_path/run."""

    def _make(*overrides: str, tiny: bool = True) -> DictConfig:
        model = next((o.split("=", 1)[1] for o in overrides if o.startswith("model=")), "dcgan")
        # An experiment picks its own model; width overrides would not fit every model.
        has_experiment = any(o.startswith("experiment=") for o in overrides)
        extra = TINY_MODEL.get(model, []) if tiny and not has_experiment else []
        return compose_config(extra + list(overrides), tmp_path / "run", tiny=tiny)

    return _make
