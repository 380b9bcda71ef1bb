"""``metrics.jsonl``: the run directory's own record of a run.

Every logged step becomes one JSON object; the training script appends a
final ``{"status": ...}`` line. Tools that read runs (``gan-compare``, tests)
read this file, never W&B's private state, so a run is inspectable offline.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers.logger import Logger, rank_zero_experiment
from pytorch_lightning.utilities.rank_zero import rank_zero_only

METRICS_FILE = "metrics.jsonl"
STATUSES = ("finished", "failed", "diverged", "interrupted")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/Inf; keep them visible as strings
    return value


class JsonlLogger(Logger):
    """A Lightning logger appending ``{"step": N, "time": t, key: value, ...}`` lines."""

    def __init__(self, save_dir: str | Path) -> None:
        super().__init__()
        self._save_dir = Path(save_dir)
        self.path = self._save_dir / METRICS_FILE

    @property
    def name(self) -> str:
        return "jsonl"

    @property
    def version(self) -> str:
        return "0"

    @property
    def save_dir(self) -> str:
        return str(self._save_dir)

    @property
    @rank_zero_experiment
    def experiment(self) -> Path:
        return self.path

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        # The composed config already lives in .hydra/config.yaml.
        return None

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        append_record(self.path, {"step": step, "time": time.time(), **metrics})


def append_record(path: str | Path, record: dict[str, Any]) -> None:
    """Append one JSON line (flushed at once, so a killed run keeps what it logged)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps({k: _jsonable(v) for k, v in record.items()}) + "\n")


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl file (an absent file has none)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def last_status_record(path: str | Path) -> dict[str, Any] | None:
    """The last status line of a metrics.jsonl file (None for a run that never wrote one)."""
    for record in reversed(read_records(path)):
        if "status" in record:
            return record
    return None


def final_status(path: str | Path) -> str | None:
    """The status of the last status line, or None for a run that never finished writing one."""
    record = last_status_record(path)
    return record["status"] if record is not None else None
