"""``metrics.jsonl``: the run directory's own record of a run.

Every logged step becomes one JSON object; the training script appends a
final ``{"status": ...}`` line. Tools that read runs (``gan-compare``, tests)
read this file, never W&B's private state, so a run is inspectable offline.

A run killed mid-write leaves a cut-off last line. The readers skip lines that
do not decode to a JSON object (:func:`read_records_checked` says which), and
:func:`append_record` starts a new line after such a fragment, so neither a
restart nor the next record is lost to it.

:class:`JsonlLogger` (a Lightning logger) is defined on first use: importing
Lightning costs seconds, and the readers here serve tools (``gan-compare``)
that never train.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from pytorch_lightning.loggers.logger import Logger

METRICS_FILE = "metrics.jsonl"
STATUSES = ("finished", "failed", "diverged", "interrupted")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/Inf; keep them visible as strings
    return value


def _define_logger() -> type[Logger]:
    from pytorch_lightning.loggers.logger import Logger, rank_zero_experiment
    from pytorch_lightning.utilities.rank_zero import rank_zero_only

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

    # A module-level name, so that pickling (DDP spawn) finds the class again.
    JsonlLogger.__module__ = __name__
    JsonlLogger.__qualname__ = "JsonlLogger"
    return JsonlLogger


def __getattr__(name: str) -> Any:
    # PEP 562: `from gan_research.utils.jsonl_logger import JsonlLogger` defines the class once.
    if name == "JsonlLogger":
        cls = _define_logger()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _ends_mid_line(path: Path) -> bool:
    """Whether ``path`` is non-empty and its last byte is not a newline (a write was cut off)."""
    try:
        with path.open("rb") as f:
            if f.seek(0, 2) == 0:
                return False
            f.seek(-1, 2)
            return f.read(1) != b"\n"
    except FileNotFoundError:
        return False


def append_record(path: str | Path, record: dict[str, Any]) -> None:
    """Append one JSON line (flushed at once, so a killed run keeps what it logged).

    After a cut-off last line the record starts on a new line: glued to the fragment,
    it would be unreadable too.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({k: _jsonable(v) for k, v in record.items()}) + "\n"
    if _ends_mid_line(path):
        line = "\n" + line
    # One write per record: a crash leaves at most this one line incomplete.
    with path.open("a") as f:
        f.write(line)
        f.flush()


class CheckedRecords(NamedTuple):
    """The records of a metrics.jsonl file and the 1-based numbers of the lines skipped."""

    records: list[dict[str, Any]]
    skipped: list[int]


def read_records_checked(path: str | Path) -> CheckedRecords:
    """All records of a metrics.jsonl file, and the lines that are not a JSON object.

    Such lines (a write cut off by a kill, a disk-full fragment, stray text) are skipped
    rather than fatal: one bad line must not make a run unreadable or unresumable.
    Blank lines are neither records nor skipped. An absent file has no records.
    """
    path = Path(path)
    if not path.exists():
        return CheckedRecords([], [])
    records: list[dict[str, Any]] = []
    skipped: list[int] = []
    # errors="replace": a cut inside a multi-byte character is one bad line, not a UnicodeDecodeError.
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:  # JSONDecodeError, and the odd non-JSON number forms
            skipped.append(number)
            continue
        if isinstance(obj, dict):
            records.append(obj)
        else:
            skipped.append(number)
    return CheckedRecords(records, skipped)


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """All readable records of a metrics.jsonl file (see :func:`read_records_checked`)."""
    return read_records_checked(path).records


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
