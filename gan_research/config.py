"""Where the Hydra config tree lives, and composing it outside a Hydra app.

Kept apart from ``train.py`` so that tools which only read configs (``gan-eval``,
``gan-compare``, ``gan-classifier``) do not import the training script.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

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


# ------------------------------------------------------------------ the options' declarations
# Error messages list valid choices from what the options declare (a dataset class's ``kinds``,
# a family class's ``data_kinds``, the ``${dataset.*}`` keys a model config reads), never from
# name lists kept in code: a new option is listed as soon as its files exist.

_DATASET_KEY = re.compile(r"\$\{dataset\.([\w.]+)\}")


def group_options(group: str) -> list[str]:
    """The options of a config group (the yaml files in ``conf/<group>/``)."""
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


def raw_option(group: str, name: str) -> DictConfig:
    """``conf/<group>/<name>.yaml`` unresolved, merged over the options of the same group its
    ``defaults`` list names (``stylegan`` over ``stylegan2``), without composing the whole tree."""
    node = OmegaConf.load(Path(CONFIG_DIR) / group / f"{name}.yaml")
    merged = OmegaConf.create()
    for entry in node.pop("defaults", []) or []:
        if isinstance(entry, str) and entry != "_self_":
            merged = OmegaConf.merge(merged, raw_option(group, entry))
    return OmegaConf.merge(merged, node)


def dataset_keys_read(node: Any) -> set[str]:
    """The ``dataset.*`` keys a config node reads through interpolation (unresolved strings)."""
    if isinstance(node, DictConfig | ListConfig):
        container = OmegaConf.to_container(node, resolve=False)
    else:
        container = node
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, str):
            found.update(_DATASET_KEY.findall(value))

    walk(container)
    return found


def _target_class(node: Any) -> Any:
    target = node.get("_target_") if isinstance(node, DictConfig) else None
    if not isinstance(target, str):
        return None
    try:
        return get_class(target.rsplit(".", 1)[0] if target.endswith(".create") else target)
    except Exception:  # an option whose class does not import is simply not listed
        return None


def dataset_options_of(kinds: Iterable[Any], reading: Iterable[str] = ()) -> list[str]:
    """Dataset options whose datamodule class declares one of ``kinds`` and whose config has the
    keys ``reading`` (those a model reads: pix2pix's ``channels_a``, SRGAN's ``scale``)."""
    wanted, needed = set(kinds), set(reading)
    fitting = []
    for name in group_options("dataset"):
        node = raw_option("dataset", name)
        if set(getattr(_target_class(node), "kinds", ())) & wanted and needed <= set(node.keys()):
            fitting.append(name)
    return fitting


def model_options_for(kind: Any, dataset_keys: Iterable[str], labelled: bool = True) -> list[str]:
    """Model options whose family learns from ``kind`` (and needs no labels unless ``labelled``)
    and whose networks read only ``dataset_keys``."""
    have = set(dataset_keys)
    fitting = []
    for name in group_options("model"):
        node = raw_option("model", name)
        family = _target_class(node)
        if family is None or kind not in getattr(family, "data_kinds", ()):
            continue
        if getattr(family, "needs_labels", False) and not labelled:
            continue
        if dataset_keys_read(node) <= have:
            fitting.append(name)
    return fitting


def _evaluator_target(path: Path) -> str | None:
    """The ``evaluator._target_`` a ``conf/metrics`` option composes to (its own, else its defaults')."""
    node = OmegaConf.load(path)
    target = OmegaConf.select(node, "evaluator._target_") if isinstance(node, DictConfig) else None
    if target:
        return str(target)
    defaults = node.get("defaults") if isinstance(node, DictConfig) else None
    for entry in defaults or []:
        if isinstance(entry, str) and entry != "_self_" and (path.parent / f"{entry}.yaml").is_file():
            found = _evaluator_target(path.parent / f"{entry}.yaml")
            if found:
                return found
    return None


def metrics_options(kind: Any = None, scores: str | None = None) -> list[str]:
    """The ``metrics`` options whose evaluator scores data of ``kind`` (a ``DataKind``; any when
    None) and models whose evaluation output is ``scores`` (``samples`` or ``translations``; any
    when None), read from the evaluators' declarations (``data_kinds``, ``scores``): no list to
    keep in step. Imports the evaluator classes (and so torch) only when called."""
    options = []
    for path in sorted((Path(CONFIG_DIR) / "metrics").glob("*.yaml")):
        target = _evaluator_target(path)
        if target is None:
            continue
        cls = get_class(target)
        if kind is not None and kind not in getattr(cls, "data_kinds", ()):
            continue
        if scores is not None and getattr(cls, "scores", scores) != scores:
            continue
        options.append(path.stem)
    return options
