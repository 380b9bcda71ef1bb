"""The closing block of a run: its status, steps, wall time, directory, final and best evaluation
figures, and the commands that take it further. Read back from the run's ``metrics.jsonl``, the
record gan-compare reads too, so what the console says and what the record holds cannot differ."""

from __future__ import annotations

import math
import shlex
from pathlib import Path
from typing import Any

from gan_research.utils.jsonl_logger import METRICS_FILE, read_records
from gan_research.utils.metric_direction import higher_is_better

# Not figures of the model: bookkeeping of the evaluation.
_NOT_FIGURES = ("val/eval_seconds", "val/collapse")
# At most this many figures per line (the record holds them all).
MAX_FIGURES = 6


def _figures(record: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in record.items()
        if k.startswith("val/")
        and k not in _NOT_FIGURES
        and not k.endswith("_std")
        and isinstance(v, (int, float))
        and not isinstance(v, bool)
        and math.isfinite(float(v))
    }


def format_seconds(seconds: float) -> str:
    """h:mm:ss (m:ss under an hour); ``--:--`` when unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "--:--"
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _show(name: str, value: float) -> str:
    return f"{name.removeprefix('val/')} {value:.4g}"


def closing_block(run_dir: str | Path, max_steps: int | None = None) -> str:
    """The block printed when a run ends (see the module docstring); ``max_steps``: the run's goal."""
    run_dir = Path(run_dir)
    records = read_records(run_dir / METRICS_FILE)
    status = next((r for r in reversed(records) if "status" in r), None)
    evaluations = [(r["step"], _figures(r)) for r in records if "status" not in r and "step" in r]
    evaluations = [(step, figures) for step, figures in evaluations if figures]
    lines = []
    if status is None:
        lines.append(f"status     no status recorded in {run_dir / METRICS_FILE}")
    else:
        goal = f" of {max_steps}" if max_steps and max_steps > 0 else ""
        wall = float(status.get("seconds") or 0.0)
        spent = sum(float(r.get("val/eval_seconds", 0.0)) for r in records if "status" not in r)
        share = ""
        if wall > 0 and spent > 0:
            share = f", evaluation {format_seconds(spent)} ({100 * spent / wall:.0f}%)"
        reason = f": {status['reason']}" if status.get("reason") else ""
        at = f"at step {status.get('step')}{goal}, {format_seconds(wall)}{share}"
        lines.append(f"status     {status['status']}{reason} {at}")
    lines.append(f"directory  {run_dir}")
    if evaluations:
        step, final = evaluations[-1]
        shown = " · ".join(_show(k, v) for k, v in list(final.items())[:MAX_FIGURES])
        lines.append(f"final      step {step}: {shown}")
        best = []
        for key in list(final)[:MAX_FIGURES]:
            points = [(s, f[key]) for s, f in evaluations if key in f]
            pick = max if higher_is_better(key) else min
            best_step, best_value = pick(points, key=lambda p: p[1])
            best.append(f"{_show(key, best_value)} (step {best_step})")
        lines.append("best       " + " · ".join(best))
    else:
        lines.append("final      no evaluation recorded (metrics=none, or the run stopped before one)")
    where = shlex.quote(str(run_dir))
    lines.append(f"next       gan-eval run_dir={where}       # score a checkpoint again")
    lines.append(f"           gan-compare sweep_dir={where}  # curves, samples and labels in a report")
    title = f" run {status['status'] if status else 'ended'} "
    return "\n".join([f"{title:─^78}", *lines, "─" * 78])
