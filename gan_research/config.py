"""Where the Hydra config tree lives, and composing it outside a Hydra app.

Kept apart from ``train.py`` so that tools which only read configs (``gan-eval``,
``gan-compare``, ``gan-classifier``) do not import the training script.
"""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

#: The repository's ``conf/`` folder (an editable install keeps it beside the package).
CONFIG_DIR: str = str(Path(__file__).resolve().parent.parent / "conf")


def compose_run(overrides: list[str], output_dir: Path) -> DictConfig:
    """conf/train.yaml composed as `gan-train` would, with the run directory at ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    # Lets ${hydra:runtime.choices.*} and error messages name the chosen options, as in gan-train.
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra
        # ${hydra:runtime.output_dir} only resolves inside a Hydra app: pin the run directory.
        cfg.paths.output_dir = str(output_dir)
    return cfg
