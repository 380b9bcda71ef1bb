"""Errors raised for bad user input, before any training work starts.

Each message names the bad value and the valid choices, so a user can fix the
command line without reading our code.
"""

from __future__ import annotations


class GanResearchError(Exception):
    """Base class of every user-facing error of gan_research."""


class ConfigError(GanResearchError, ValueError):
    """An invalid or incompatible configuration value."""


class DataError(GanResearchError, ValueError):
    """A dataset that is missing, empty, unreadable or too small."""


class CheckpointError(GanResearchError, ValueError):
    """A checkpoint that is missing, unreadable or does not fit the model."""
