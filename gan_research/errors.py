"""Errors raised for bad user input, before any training work starts.

Each message names the bad value and the valid choices, so a user can fix the
command line without reading our code.
"""

from __future__ import annotations

import sys
from typing import NoReturn


class GanResearchError(Exception):
    """Base class of every user-facing error of gan_research."""


class ConfigError(GanResearchError, ValueError):
    """An invalid or incompatible configuration value."""


class DataError(GanResearchError, ValueError):
    """A dataset that is missing, empty, unreadable or too small."""


class CheckpointError(GanResearchError, ValueError):
    """A checkpoint that is missing, unreadable or does not fit the model."""


def one_line(text: str, limit: int = 300) -> str:
    """``text`` with its whitespace (newlines included) collapsed, cut at ``limit`` characters:
    every CLI prints a refusal as exactly one ``error:`` line."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def user_error_in(err: BaseException) -> GanResearchError | None:
    """Our own error inside a wrapper's cause chain (Hydra's InstantiationException wraps what a
    constructor raised), so it reaches the user with its own message; None when there is none."""
    cause = err.__cause__
    while cause is not None and not isinstance(cause, GanResearchError):
        cause = cause.__cause__
    return cause


def exit_with_error(message: object, code: int = 2) -> NoReturn:
    """Print ``error: <message>`` as exactly one line on stderr and exit (2: bad input)."""
    print("error: " + one_line(str(message), 2000), file=sys.stderr)
    sys.exit(code)
