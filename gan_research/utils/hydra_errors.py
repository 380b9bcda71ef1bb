"""Hydra's composition errors as one line that names the bad value and the valid ones.

Hydra reports an unknown option as several lines ("Could not find 'model/foo'",
then the options one per line), an unknown key with the advice to append it
(``+schedule.lr=...``, which would silently add a key nothing reads) and a parse
error with a grammar dump. The CLIs print these instead, on one ``error:`` line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from hydra.errors import MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf

from gan_research.errors import one_line

_OVERRIDE_RE = re.compile(r"Could not override '([^']+)'")
_APPEND_RE = re.compile(r"Could not append to config\. An item is already at '([^']+)'")
_KEY_RE = re.compile(r"Key '([^']+)' is not in struct")


def _valid_keys(compose_base: Callable[[], DictConfig] | None, key: str) -> str:
    """The keys that exist beside ``key`` (``schedule.lr`` -> the keys of ``schedule``)."""
    if compose_base is None:
        return ""
    try:
        base = compose_base()
    except Exception:
        return ""
    parent = key.rsplit(".", 1)[0] if "." in key else ""
    node: Any = OmegaConf.select(base, parent) if parent else base
    if not isinstance(node, DictConfig):
        return ""
    keys = sorted(str(k) for k in node if not str(k).startswith("_"))
    where = f"of {parent}" if parent else "at the top level"
    return f"; valid keys {where}: {', '.join(keys)}"


def hydra_error_message(
    err: BaseException, overrides: list[str], compose_base: Callable[[], DictConfig] | None = None
) -> str:
    """One line for a Hydra/OmegaConf composition error.

    ``compose_base``: composes the primary config without the command's overrides,
    to list the valid keys next to an unknown one.
    """
    text = str(err)
    if isinstance(err, OverrideParseException):
        detail = one_line(text.split(" See https://")[0])
        return f"cannot parse the override {err.override!r} (key=value; see `--help`): {detail}"
    if isinstance(err, MissingConfigException) and err.missing_cfg_file:
        missing = str(err.missing_cfg_file)
        group, _, option = missing.rpartition("/")
        options = list(getattr(err, "options", None) or [])
        if group and options:
            return f"{group}={option} is not an option of {group}; valid options: {', '.join(options)}"
        return one_line(text)
    match = _OVERRIDE_RE.search(text)
    if match and ("not in struct" in text or "append to your config" in text):
        key = match.group(1)
        value = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("~+") == key), "")
        return f"unknown key {key} (in {key}={value}){_valid_keys(compose_base, key)}"
    cause = err.__cause__
    if cause is not None:
        cause_text = one_line(str(cause))
        key = _KEY_RE.search(cause_text)
        if key and match:
            return f"unknown key {match.group(1)}{_valid_keys(compose_base, match.group(1))}"
        return one_line(f"{text} ({cause_text})" if cause_text and cause_text not in text else text)
    return one_line(text)
