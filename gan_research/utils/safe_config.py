"""Reading back what a run directory or a cache holds without running code from it.

Issue 13, item 4 ("Nothing that loads a file runs code"):

- A config read back from a run directory (``.hydra/config.yaml``) is data a stranger
  may have written. ``hydra.utils.instantiate`` calls whatever its ``_target_`` names
  (``{_target_: torch.load, f: evil.ckpt, weights_only: false}`` runs a pickle), so
  :func:`check_targets` refuses every ``_target_`` outside :data:`ALLOWED_TARGET_PREFIXES`
  and :func:`checked_node` hands ``instantiate`` a node that has been resolved and then
  checked, so an interpolation cannot smuggle a target in after the check.
- A weights or cache file is read with ``torch.load(weights_only=True)`` only
  (:func:`load_weights_only`): tensors and plain containers, never arbitrary objects,
  and a refusal is one line that does not advise ``weights_only=False``.

OmegaConf resolvers: a loaded config may call any *registered* resolver. This project
registers none; OmegaConf's ``oc.*`` and Hydra's ``hydra``/``now`` only read values
(``oc.env`` reads an environment variable), but ``oc.create``/``oc.decode`` build nodes
from strings, which is why targets are checked after resolution as well as before.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from hydra._internal.utils import _locate
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from gan_research.errors import CheckpointError, ConfigError, one_line

#: Packages whose classes and functions a run config may instantiate (matched on whole
#: dotted components): this project, torch's optimisers (``torch.optim.lr_scheduler``
#: included) and Lightning (``trainer=slurm`` names ``lightning_fabric``'s SLURMEnvironment).
ALLOWED_TARGET_PREFIXES: tuple[str, ...] = (
    "gan_research",
    "torch.optim",
    "pytorch_lightning",
    "lightning",
    "lightning_fabric",
)
#: Only the project's own package may name functions; elsewhere only classes.
_FUNCTIONS_ALLOWED_IN = "gan_research"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class DisallowedTargetError(ConfigError):
    """A config names a ``_target_`` outside the allow-list (or one that is not a plain dotted path)."""


def _in_prefixes(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def iter_targets(cfg: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """``(key path, value)`` of every ``_target_`` in ``cfg``, nested dicts and lists included.

    Interpolations are not resolved: a ``_target_`` written as ``${...}`` is yielded as written.
    """
    if isinstance(cfg, (DictConfig, ListConfig)):
        cfg = OmegaConf.to_container(cfg, resolve=False)
    if isinstance(cfg, Mapping):
        for key, value in cfg.items():
            where = f"{path}.{key}" if path else str(key)
            if key == "_target_":
                yield where, value
            else:
                yield from iter_targets(value, where)
    elif isinstance(cfg, (list, tuple)):
        for index, value in enumerate(cfg):
            yield from iter_targets(value, f"{path}[{index}]")


def _defining_module(obj: Any) -> str | None:
    # A bound classmethod (Schedule.create) reports its function's module.
    module = getattr(obj, "__module__", None)
    return module if isinstance(module, str) else None


def target_problem(
    target: Any, prefixes: Sequence[str] = ALLOWED_TARGET_PREFIXES, *, locate: bool = True
) -> str | None:
    """Why ``target`` may not be instantiated, or None when it may.

    The name must be a literal dotted path inside ``prefixes`` without dunder parts. With
    ``locate`` (importing only modules inside ``prefixes``), the object it names must also
    be *defined* inside them (a module re-exporting ``torch.load`` does not make
    ``gan_research.x.torch.load`` safe), and outside the project's package it must be a
    class. A name that cannot be imported passes: instantiate fails on it anyway.
    """
    if not isinstance(target, str):
        return f"is of type {type(target).__name__}, not a dotted path string"
    if "${" in target:
        return "is an interpolation; a _target_ must be a literal dotted path"
    parts = target.split(".")
    if not all(_IDENTIFIER.fullmatch(p) and not p.startswith("__") for p in parts):
        return "is not a plain dotted path of identifiers"
    if not _in_prefixes(target, prefixes):
        return "is outside the allow-list"
    if not locate:
        return None
    try:
        obj = _locate(target)
    except Exception:
        return None
    module = _defining_module(obj)
    if module is None or not _in_prefixes(module, prefixes):
        return f"names an object defined in {module or 'an unknown module'}, outside the allow-list"
    if not isinstance(obj, type) and not _in_prefixes(module, (_FUNCTIONS_ALLOWED_IN,)):
        return f"names a {type(obj).__name__}; outside gan_research only classes may be instantiated"
    if not callable(obj):
        return f"names a {type(obj).__name__}, which cannot be instantiated"
    return None


def check_targets(
    cfg: Any,
    source: str,
    *,
    prefixes: Sequence[str] = ALLOWED_TARGET_PREFIXES,
    path: str = "",
    locate: bool = True,
) -> None:
    """Refuse ``cfg`` (a DictConfig, ListConfig or plain containers) if any ``_target_`` is not allowed.

    Issue 13, item 4: configs read back from run directories are instantiated only for
    ``_target_``s inside the allow-list. ``source`` names where the config came from
    (the file), ``path`` the key ``cfg`` sits at, so the error names the full key.
    ``locate=False`` checks names only (no imports): enough for nodes that will not be
    instantiated, which :func:`checked_node` checks fully before they are.

    Raises:
        DisallowedTargetError: naming the file, the key path, the target and the allow-list.
    """
    for key, target in iter_targets(cfg, path):
        problem = target_problem(target, prefixes, locate=locate)
        if problem is not None:
            raise DisallowedTargetError(
                f"{source}: {key}={target!r} {problem}; gan_research only instantiates classes "
                f"(and gan_research functions) of {', '.join(prefixes)} from a config it reads back"
            )


def _strings_with_interpolations(value: Any, path: str) -> Iterator[str]:
    if isinstance(value, str):
        if "${" in value:
            yield path
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings_with_interpolations(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _strings_with_interpolations(item, f"{path}[{index}]")


def checked_node(
    node: DictConfig, source: str, key: str, *, prefixes: Sequence[str] = ALLOWED_TARGET_PREFIXES
) -> DictConfig:
    """``node`` resolved to plain values, its targets checked: the config to hand to ``instantiate``.

    Resolving first means a target built by ``${oc.create:...}`` or ``${oc.decode:...}`` is seen
    by the check; a resolved value that is itself an interpolation is refused, because
    ``instantiate`` would resolve it again, after the check.

    Raises:
        ConfigError: the node does not resolve, or resolves to another interpolation.
        DisallowedTargetError: a target is not allowed.
    """
    try:
        plain = OmegaConf.to_container(node, resolve=True)
    except OmegaConfBaseException as err:
        raise ConfigError(f"{source}: {key} does not resolve ({one_line(str(err))})") from None
    for where in _strings_with_interpolations(plain, key):
        raise ConfigError(f"{source}: {where} resolves to another interpolation; refusing to instantiate it")
    check_targets(plain, source, prefixes=prefixes, path=key)
    return OmegaConf.create(plain)


# --- torch files -------------------------------------------------------------------------


def describe_load_error(err: BaseException) -> str:
    """One line on why ``torch.load(weights_only=True)`` did not read a file.

    torch's own message for a refused object spans lines and suggests
    ``weights_only=False``, the one thing that must not be done with a file of unknown origin.
    """
    text = str(err)
    if isinstance(err, pickle.UnpicklingError) and "Weights only load failed" in text:
        found = re.search(r"WeightsUnpickler error:(.*?)(?:Please use|Check the documentation|$)", text, re.S)
        detail = one_line(found.group(1)).rstrip(". ") if found else ""
        # A GLOBAL is a reference to a function or class: the way a pickle runs code.
        if "global" in detail.lower() or "class" in detail.lower():
            return (
                f"it holds objects other than tensors and plain containers ({detail}), "
                "which are refused, never run"
            )
        return f"it is truncated, corrupt or not a torch file (unpickling failed: {detail or 'unknown'})"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"it is truncated, corrupt or not a torch file ({type(err).__name__}: {one_line(first, 160)})"


def load_weights_only(
    path: str | os.PathLike[str], *, what: str, fix: str, map_location: str | torch.device = "cpu"
) -> Any:
    """``torch.load(path, weights_only=True)``, failing with one line naming ``what`` and the ``fix``.

    Raises:
        CheckpointError: the file is unreadable, damaged, or holds more than tensors and containers.
    """
    try:
        return torch.load(Path(path), map_location=map_location, weights_only=True)
    except Exception as err:  # damaged files fail in many ways (zip, unpickling, EOF, OS errors)
        raise CheckpointError(
            f"{what} {path} could not be loaded: {describe_load_error(err)}. {fix}"
        ) from err
