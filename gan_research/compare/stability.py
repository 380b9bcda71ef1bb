"""A stability label for each run: converged, oscillating, diverged, undertrained or collapsed.

The point of a learning-rate sweep over G and D is to see *where* training is
stable, so each run gets one label and one sentence saying why. The rules are
deliberately simple thresholds on what ``metrics.jsonl`` holds, checked in a
fixed order (the first that fires wins), all thresholds in :class:`StabilityRules`
(``rules:`` in ``conf/compare.yaml``). The README's "Stability labels" section states them
exactly, with the hand-made curves the defaults were chosen on.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gan_research.compare.runs import RUNNING, RunRecord, param
from gan_research.errors import ConfigError
from gan_research.utils.validation import check_int_at_least

LABELS = ("converged", "oscillating", "diverged", "undertrained", "collapsed", "failed", "running")


@dataclass(frozen=True)
class StabilityRules:
    """Thresholds of :func:`label_run`.

    Args:
        window: the fraction of each curve (its last points) that the rules look at.
        max_abs_loss: a loss above this in absolute value counts as divergence.
        min_modes_fraction: fewer recovered modes than this fraction of the data's modes is collapse.
        min_classes_fraction: fewer covered classes than this fraction of ``val/num_classes`` is collapse.
        smooth: points of the moving average applied before measuring an oscillation
            (it removes the step-to-step noise of minibatch losses).
        eps: added to a curve's mean |value| so curves hovering at 0 (a WGAN critic) are not
            judged relative to almost nothing; in the curve's units.
        max_relative_oscillation: a larger detrended, smoothed std / (mean |value| + eps) is oscillation.
        max_metric_swing: a back-and-forth of an evaluation metric with both moves larger than this
            fraction of the metric's largest |value| in the window is oscillation (modes 8 -> 3 -> 8).
        loss_keys: the loss curves checked for divergence and oscillation.
        swing_metrics: glob patterns of the evaluation metrics checked for swings.
        rising_window: how many of a metric's last evaluations the undertrained rule looks at (>= 3:
            two points make a step, not a trend).
        min_rise: over those evaluations, the last must exceed the first by more than this fraction
            of their largest |value| for the metric to count as still rising.
        rising_metrics: glob patterns of the metrics (recovered modes, covered classes, quality) whose
            rise at the end of a run marks it undertrained rather than collapsed or converged.
    """

    window: float = 0.5
    max_abs_loss: float = 1e4
    min_modes_fraction: float = 0.5
    min_classes_fraction: float = 0.5
    smooth: int = 5
    eps: float = 0.1
    max_relative_oscillation: float = 0.25
    max_metric_swing: float = 0.3
    loss_keys: tuple[str, ...] = ("train/d_loss", "train/g_loss")
    swing_metrics: tuple[str, ...] = ("val/modes_recovered", "val/classes_covered", "val/fid*")
    rising_window: int = 3
    min_rise: float = 0.05
    rising_metrics: tuple[str, ...] = (
        "val/modes_recovered",
        "val/modes_covered",
        "val/classes_covered",
        "val/high_quality",
    )

    def __post_init__(self) -> None:
        if not 0 < self.window <= 1:
            raise ConfigError(f"rules.window must be in (0, 1], got {self.window}")
        check_int_at_least("rules", "smooth", self.smooth, 1, form="key")
        check_int_at_least("rules", "rising_window", self.rising_window, 3, form="key")
        for name in ("max_abs_loss", "eps", "max_relative_oscillation", "max_metric_swing", "min_rise"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"rules.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("min_modes_fraction", "min_classes_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"rules.{name} must be in [0, 1], got {getattr(self, name)}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> StabilityRules:
        """From the ``rules:`` block of the config; an unknown key names the valid ones."""
        values = dict(values or {})
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise ConfigError(f"unknown rules key(s) {unknown}; valid keys: {sorted(fields)}")
        for name in ("loss_keys", "swing_metrics", "rising_metrics"):
            if name in values:
                values[name] = tuple(values[name] or ())
        for f in dataclasses.fields(cls):
            # YAML reads 1e4 as a string and 1 as an int: thresholds are floats.
            if f.type == "float" and values.get(f.name) is not None:
                try:
                    values[f.name] = float(values[f.name])
                except (TypeError, ValueError) as err:
                    raise ConfigError(f"rules.{f.name} must be a number, got {values[f.name]!r}") from err
        return cls(**values)

    def describe(self) -> list[str]:
        """The rules in order, one line each, with this instance's thresholds (for the report)."""
        pct = f"{self.window:.0%}"
        losses = ", ".join(self.loss_keys)
        return [
            f"**diverged**: status `diverged`, or a non-finite {losses} in the last {pct} of the curve "
            f"(or at the end), or |loss| > {self.max_abs_loss:g} there.",
            "**failed** / **running**: the run ended with another error / wrote no status line "
            "(still running, killed, or `interrupted`).",
            f"**undertrained**: a metric ({', '.join(self.rising_metrics)}) still rising at the end: over "
            f"its last {self.rising_window} evaluations the last is the highest and above the one before "
            f"it, and exceeds the first by more than {self.min_rise:g} x their largest |value|.",
            f"**collapsed**: final `val/collapse` = 1, or final `val/modes_recovered` / modes total "
            f"< {self.min_modes_fraction:g}, or final `val/classes_covered` / `val/num_classes` "
            f"< {self.min_classes_fraction:g}.",
            f"**oscillating**: on the last {pct} of {losses}, std of the linearly detrended curve "
            f"smoothed over {self.smooth} points / (mean |value| + {self.eps:g}) "
            f"> {self.max_relative_oscillation:g}; or an evaluation metric ({', '.join(self.swing_metrics)}) "
            f"goes back and forth with both moves > {self.max_metric_swing:g} x its largest |value| "
            f"in the last {pct} of evaluations.",
            "**converged**: finished, none of the above.",
        ]


def label_run(run: RunRecord, *, rules: StabilityRules | None = None) -> tuple[str, str]:
    """Return ``(label, reason)``: diverged, failed/running, undertrained, collapsed, oscillating, converged.

    Divergence is checked on every run (a killed run with NaN losses diverged); the rest only on
    finished runs, since an unfinished curve says nothing about where it ends. Undertrained comes
    before collapsed: few modes at the end of a run whose modes or quality are still climbing say
    the run stopped too early, not that the generator collapsed.
    """
    rules = rules or StabilityRules()
    if run.status == "diverged":
        return "diverged", f"status diverged: {run.reason or 'no reason recorded'}"
    reason = _divergence(run, rules)
    if reason:
        return "diverged", reason
    if run.status == "failed":
        return "failed", run.reason or "status failed, no reason recorded"
    if run.status == "interrupted":
        return "running", f"interrupted at step {run.steps}: not finished (gan-train resumes it)"
    if run.status != "finished":
        if run.status == RUNNING and not run.history and not run.final:
            return "running", "no metrics and no status line yet (running, or killed before logging)"
        return "running", f"no status line: still running or killed (last step {run.steps})"
    collapse = _collapse(run, rules)
    reason = _still_rising(run, rules)
    if reason:
        # Say what the final values alone would have been judged, so the report shows both readings.
        return "undertrained", reason + (
            f"; the final values alone read as collapsed ({collapse})" if collapse else ""
        )
    if collapse:
        return "collapsed", collapse
    reason, largest = _oscillation(run, rules)
    if reason:
        return "oscillating", reason
    if largest is None:
        return "converged", "finished; no loss curve long enough to judge oscillation"
    key, value = largest
    return "converged", (
        f"finished; steady (largest relative oscillation {value:.3g} on {key} "
        f"<= {rules.max_relative_oscillation:g})"
    )


def tail(points: list[tuple[int, float]], window: float, minimum: int = 1) -> list[tuple[int, float]]:
    """The last ``window`` fraction of ``points`` (at least ``minimum`` of them)."""
    n = len(points)
    keep = max(minimum, math.ceil(window * n))
    return points[max(0, n - keep) :]


def _divergence(run: RunRecord, rules: StabilityRules) -> str | None:
    for key in rules.loss_keys:
        points = tail(run.history.get(key, []), rules.window)
        if key in run.final:
            points = [*points, (run.steps if run.steps is not None else -1, run.final[key])]
        for step, value in points:
            if not math.isfinite(value):
                return f"{key} = {value} at step {step} (in the last {rules.window:.0%} of the run)"
            if abs(value) > rules.max_abs_loss:
                return f"|{key}| = {abs(value):.3g} > max_abs_loss={rules.max_abs_loss:g} at step {step}"
    return None


def modes_total(run: RunRecord) -> float | None:
    """How many modes the run's data has: ``val/modes_total`` if logged, else from the dataset config."""
    if _finite(run.final.get("val/modes_total")):
        return run.final["val/modes_total"]
    num_modes = param(run, "dataset.num_modes")
    if isinstance(num_modes, (int, float)) and not isinstance(num_modes, bool) and num_modes > 0:
        return float(num_modes)
    grid = param(run, "dataset.grid_size")  # grid25: grid_size**2 Gaussians
    if isinstance(grid, int) and not isinstance(grid, bool) and grid > 0:
        return float(grid * grid)
    return None


def _collapse(run: RunRecord, rules: StabilityRules) -> str | None:
    final = run.final
    if _finite(final.get("val/collapse")) and final["val/collapse"] >= 0.5:
        return "val/collapse = 1 at the end (the run's collapse detector fired)"
    total = modes_total(run)
    if _finite(final.get("val/modes_recovered")) and total:
        fraction = final["val/modes_recovered"] / total
        if fraction < rules.min_modes_fraction:
            return (
                f"val/modes_recovered = {final['val/modes_recovered']:g}/{total:g} ({fraction:.2f}) "
                f"< min_modes_fraction={rules.min_modes_fraction:g}"
            )
    classes = final.get("val/num_classes")
    if _finite(final.get("val/classes_covered")) and _finite(classes) and classes:
        fraction = final["val/classes_covered"] / classes
        if fraction < rules.min_classes_fraction:
            return (
                f"val/classes_covered = {final['val/classes_covered']:g}/{classes:g} ({fraction:.2f}) "
                f"< min_classes_fraction={rules.min_classes_fraction:g}"
            )
    return None


def still_rising(values: list[float], min_rise: float) -> bool:
    """Whether ``values`` (a metric's last evaluations, oldest first) are still rising at their end.

    The last value is the highest of them and above the one before it (the curve has not levelled
    off or fallen back), and it exceeds the first by more than ``min_rise`` x their largest |value|
    (more than evaluation noise: a fraction of the metric's own scale, so modes and percent alike).
    """
    if len(values) < 2 or not all(math.isfinite(v) for v in values):
        return False
    last, largest = values[-1], max(abs(v) for v in values)
    return last >= max(values) and last > values[-2] and last - values[0] > min_rise * largest


def _still_rising(run: RunRecord, rules: StabilityRules) -> str | None:
    for key in sorted(run.history):
        if not any(fnmatch.fnmatchcase(key, p) for p in rules.rising_metrics):
            continue
        points = [(s, v) for s, v in run.history[key] if math.isfinite(v)][-rules.rising_window :]
        # Fewer evaluations than the window: too short a curve to call a trend.
        if len(points) < rules.rising_window or not still_rising([v for _, v in points], rules.min_rise):
            continue
        values = [v for _, v in points]
        shown = (
            " -> ".join(f"{v:g}" for v in values)
            if len(values) <= 5
            else f"{values[0]:g} -> ... -> {values[-1]:g}"
        )
        return (
            f"{key} still rising: {shown} over its last {len(values)} evaluations (steps {points[0][0]}-"
            f"{points[-1][0]}), up {values[-1] - values[0]:g} > min_rise={rules.min_rise:g} x "
            f"{max(abs(v) for v in values):g}"
        )
    return None


def relative_oscillation(steps: list[float], values: list[float], smooth: int, eps: float) -> float:
    """std of the linearly detrended curve after a ``smooth``-point moving average, / (mean |value| + eps)."""
    t = np.asarray(steps, dtype=float)
    y = np.asarray(values, dtype=float)
    if len(y) < 3:
        return 0.0
    if np.ptp(t) == 0:
        t = np.arange(len(y), dtype=float)
    slope, intercept = np.polyfit(t, y, 1)
    residual = y - (slope * t + intercept)
    k = min(smooth, len(residual))
    smoothed = np.convolve(residual, np.ones(k) / k, mode="valid")
    return float(smoothed.std() / (np.abs(y).mean() + eps))


def _oscillation(run: RunRecord, rules: StabilityRules) -> tuple[str | None, tuple[str, float] | None]:
    """(reason or None, the largest relative loss oscillation seen as (key, value))."""
    largest: tuple[str, float] | None = None
    pct = f"{rules.window:.0%}"
    for key in rules.loss_keys:
        points = [(s, v) for s, v in tail(run.history.get(key, []), rules.window) if math.isfinite(v)]
        # Fewer points than a smoothing window and two more cannot show a trend and a swing.
        if len(points) < max(3, rules.smooth + 2):
            continue
        value = relative_oscillation([s for s, _ in points], [v for _, v in points], rules.smooth, rules.eps)
        if largest is None or value > largest[1]:
            largest = (key, value)
    if largest is not None and largest[1] > rules.max_relative_oscillation:
        key, value = largest
        return (
            f"{key} oscillates: relative amplitude {value:.3g} over the last {pct} "
            f"> max_relative_oscillation={rules.max_relative_oscillation:g}"
        ), largest
    for key in sorted(run.history):
        if not any(fnmatch.fnmatchcase(key, p) for p in rules.swing_metrics):
            continue
        points = [(s, v) for s, v in tail(run.history[key], rules.window, minimum=3) if math.isfinite(v)]
        if len(points) < 3:
            continue
        scale = max(abs(v) for _, v in points) + rules.eps
        for (s0, a), (_, b), (s2, c) in zip(points, points[1:], points[2:], strict=False):
            first, second = b - a, c - b
            if first * second < 0 and min(abs(first), abs(second)) / scale > rules.max_metric_swing:
                return (
                    f"{key} swings {a:g} -> {b:g} -> {c:g} between steps {s0} and {s2} "
                    f"(moves > max_metric_swing={rules.max_metric_swing:g} x {scale - rules.eps:g})"
                ), largest
    return None, largest


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
