"""``gan-classifier``: train the domain classifier conf/classifier.yaml describes and save it.

:func:`run` does the work on a composed config; :func:`main` is the Hydra app behind the console
script (``gan_research.metrics.classifier:main``, re-exported by the package).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import hydra
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from gan_research.config import CONFIG_DIR
from gan_research.errors import ConfigError, GanResearchError, exit_with_error, user_error_in
from gan_research.metrics.classifier.checkpoint import default_classifier_path, save_classifier
from gan_research.metrics.classifier.training import train_classifier


def _instantiate_dataset(node: DictConfig) -> Any:
    try:
        return instantiate(node)
    except InstantiationException as err:
        # Hydra wraps constructor errors; surface ours (they already name the bad value).
        ours = user_error_in(err)
        if ours is not None:
            raise ours from None
        raise ConfigError(f"could not build the dataset: {err}") from err


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train the classifier ``cfg`` describes (conf/classifier.yaml), save it, return what was made."""
    datamodule = _instantiate_dataset(cfg.dataset)
    image_size = int(datamodule.sample_shape[-1]) if len(datamodule.sample_shape) == 3 else 0
    out = (
        Path(cfg.out)
        if cfg.get("out")
        else default_classifier_path(cfg.paths.data_dir, datamodule.name, image_size)
    )
    started = time.perf_counter()
    model, accuracy = train_classifier(
        datamodule,
        epochs=cfg.epochs,
        lr=cfg.lr,
        seed=cfg.seed,
        batch_size=cfg.batch_size,
        test_fraction=cfg.test_fraction,
        width=cfg.width,
        num_features=cfg.num_features,
        dropout=cfg.dropout,
        max_shift=cfg.max_shift,
        weight_decay=cfg.weight_decay,
        device=cfg.get("device"),
        num_threads=cfg.get("num_threads"),
    )
    seconds = time.perf_counter() - started
    meta = {
        key: OmegaConf.to_container(cfg[key], resolve=True) if isinstance(cfg[key], DictConfig) else cfg[key]
        for key in ("seed", "epochs", "lr", "batch_size", "test_fraction", "max_shift", "weight_decay")
    }
    meta["dataset_config"] = OmegaConf.to_container(cfg.dataset, resolve=True)
    meta["train_seconds"] = round(seconds, 2)
    checksum = save_classifier(model, out, accuracy, datamodule.name, meta)
    print(f"{datamodule.name} classifier: test accuracy {accuracy:.4f} ({seconds:.1f} s)")
    print(f"sha256 {checksum}")
    print(f"saved to {out}")
    return {"model": model, "test_accuracy": accuracy, "sha256": checksum, "path": out, "seconds": seconds}


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="classifier")
def main(cfg: DictConfig) -> float:
    """``gan-classifier dataset=<name> [out=<path>] [epochs=...]``: train and save a domain classifier."""
    try:
        return run(cfg)["test_accuracy"]
    except GanResearchError as err:
        # One clear line for bad input instead of a traceback (printed once, not logged too).
        exit_with_error(err)


if __name__ == "__main__":
    main()
