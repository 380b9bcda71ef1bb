"""``gan-eval``: the metrics of one checkpoint of a run, as JSON.

The run is rebuilt from its own ``.hydra/config.yaml`` (DESIGN.md: tools read
the run directory, never private state); the checkpoint is loaded with
``weights_only=True``; the metrics are the run's ``MetricSuite`` with the
settings of the ``metrics`` group given to ``gan-eval``. For a class-conditional
model the JSON also holds ``per_class``: the per-class class accuracy and
intra-FID behind ``metrics``' ``val/class_accuracy_*`` and ``val/intra_fid_*``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from gan_research.errors import CheckpointError, ConfigError, GanResearchError
from gan_research.metrics.suite import MetricSuite
from gan_research.train import CONFIG_DIR

log = logging.getLogger(__name__)

# Keys of the metrics group that belong to the training-time callback, not to the suite.
_CALLBACK_ONLY = ("_target_", "every_n_steps", "stop_on_collapse")


def load_run_config(run_dir: Path) -> DictConfig:
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        raise CheckpointError(f"{run_dir} is not a run directory: {path} is missing")
    cfg = OmegaConf.load(path)
    with open_dict(cfg):
        # ${hydra:...} only resolves inside the run's own app; pin what it meant.
        cfg.paths.output_dir = str(run_dir)
        cfg.name = run_dir.name
    return cfg


def evaluate_checkpoint(
    run_dir: str | Path, checkpoint: str, metrics: DictConfig, device: str = "auto", seed: int = 0
) -> dict[str, Any]:
    """Rebuild a run's model and data, load ``checkpoint`` and compute ``metrics`` on it."""
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    ckpt_path = Path(checkpoint)
    if not ckpt_path.is_absolute():
        ckpt_path = run_dir / "checkpoints" / checkpoint
    if not ckpt_path.is_file():
        available = sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt"))
        raise CheckpointError(
            f"checkpoint {ckpt_path} does not exist; available in {run_dir}: {available or 'none'}"
        )
    pl.seed_everything(seed, verbose=False)
    model = instantiate(cfg.model)
    try:
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["state_dict"])
    except (RuntimeError, KeyError, EOFError, ValueError) as err:
        raise CheckpointError(f"checkpoint {ckpt_path} does not fit the run's model: {err}") from err
    datamodule = instantiate(cfg.dataset)
    settings = {
        k: v for k, v in OmegaConf.to_container(metrics, resolve=True).items() if k not in _CALLBACK_ONLY
    }
    suite = MetricSuite(datamodule, **settings)
    dev = torch.device(
        "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    )
    model.to(dev)
    started = time.perf_counter()
    # Images, or (images, labels) from a class-conditional family (class accuracy, intra-FID).
    results = suite.evaluate(model.sample_for_evaluation, dev)
    extra = {"per_class": suite.last_per_class} if suite.last_per_class else {}
    return {
        "run_dir": str(run_dir),
        "checkpoint": str(ckpt_path),
        "step": int(state.get("global_step", -1)),
        "generator": "ema" if model.generator_ema is not None else "generator",
        "num_samples": suite.num_samples,
        "feature_network": suite.feature_network,
        "seconds": round(time.perf_counter() - started, 3),
        "metrics": results,
        **extra,
    }


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    try:
        if not cfg.get("metrics"):
            raise ConfigError("gan-eval needs a metrics option (metrics=default or metrics=inception)")
        result = evaluate_checkpoint(cfg.run_dir, cfg.checkpoint, cfg.metrics, cfg.device, cfg.seed)
    except GanResearchError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    out = Path(cfg.out) if cfg.out else Path(cfg.run_dir) / "eval" / f"{Path(cfg.checkpoint).stem}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["metrics"], indent=2))
    log.info("wrote %s", out)


if __name__ == "__main__":
    main()
