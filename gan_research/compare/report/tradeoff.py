"""The perception-distortion plane (Blau & Michaeli, CVPR 2018) of the report.

The ``tradeoff:`` block (:class:`Tradeoff`: which two metrics, which direction is better), each
run at its final values of both (:func:`tradeoff_points`), the Pareto front, the bicubic
baseline, the figure (:func:`plot_tradeoff`) and its section of the page.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gan_research.compare.report.axes import Labels, describe_run, fmt
from gan_research.compare.report.figures import _figure
from gan_research.compare.report.tables import _cell_text
from gan_research.compare.runs import RunRecord
from gan_research.compare.stability import LABELS
from gan_research.errors import ConfigError
from gan_research.utils.metric_direction import higher_is_better

if TYPE_CHECKING:
    from gan_research.compare.report.page import _Page

# The perception-distortion plane's figure.
TRADEOFF_FIGURE = "tradeoff.png"

# The suffix of a baseline's metric logged beside the run's own (val/psnr_y_bicubic).
BASELINE_SUFFIX = "_bicubic"
# Above this many plotted runs only the Pareto front's points are annotated with their values.
MAX_ANNOTATED_RUNS = 30
_LABEL_COLORS = {
    "converged": "tab:green",
    "oscillating": "tab:orange",
    "diverged": "tab:red",
    "undertrained": "tab:olive",
    "collapsed": "tab:purple",
    "failed": "tab:gray",
    "running": "tab:blue",
}


@dataclass(frozen=True)
class Tradeoff:
    """The ``tradeoff:`` block: the perception-distortion plane (Blau & Michaeli, CVPR 2018).

    ``x``: the distortion metric (e.g. ``val/psnr_y``), ``y``: the perceptual-quality metric (e.g.
    ``val/fid_digits``); both None: no plane. ``x_higher_is_better`` / ``y_higher_is_better``:
    None decides from the name (:func:`higher_is_better`).
    """

    x: str | None = None
    y: str | None = None
    x_higher_is_better: bool | None = None
    y_higher_is_better: bool | None = None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> Tradeoff:
        """From the config's ``tradeoff:`` block (None: off); a bad key or value names the valid ones."""
        values = dict(values or {})
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ConfigError(f"unknown tradeoff key(s) {unknown}; valid keys: {fields}")
        for axis in ("x", "y"):
            value = values.get(axis)
            if value is not None and (not isinstance(value, str) or "/" not in value):
                raise ConfigError(
                    f"tradeoff.{axis} must be a metric name (<stage>/<name>, e.g. val/psnr_y) or null, "
                    f"got {value!r}"
                )
            flag = values.get(f"{axis}_higher_is_better")
            if flag is not None and not isinstance(flag, bool):
                raise ConfigError(
                    f"tradeoff.{axis}_higher_is_better must be true, false or null (decided from the "
                    f"name), got {flag!r}"
                )
        tradeoff = cls(**{k: (v or None) if k in ("x", "y") else v for k, v in values.items()})
        if bool(tradeoff.x) != bool(tradeoff.y):
            raise ConfigError(
                "the perception-distortion plane needs both tradeoff.x (a distortion metric, e.g. "
                "val/psnr_y) and tradeoff.y (a perceptual metric, e.g. val/fid_digits); "
                f"got x={tradeoff.x!r}, y={tradeoff.y!r}"
            )
        if tradeoff.x and tradeoff.x == tradeoff.y:
            raise ConfigError(
                f"tradeoff.x and tradeoff.y are both {tradeoff.x!r}; pick two different metrics"
            )
        return tradeoff

    @property
    def enabled(self) -> bool:
        return bool(self.x and self.y)

    @property
    def directions(self) -> tuple[bool, bool]:
        """(x higher is better, y higher is better)."""
        assert self.x and self.y
        x_up = self.x_higher_is_better if self.x_higher_is_better is not None else higher_is_better(self.x)
        y_up = self.y_higher_is_better if self.y_higher_is_better is not None else higher_is_better(self.y)
        return x_up, y_up


def check_metric_key(runs: list[RunRecord], key: str, role: str) -> None:
    """Refuse a metric that no run logged, listing the ones they did (as :func:`check_axis_key`)."""
    if not any(key in run.final for run in runs):
        logged = sorted({k for run in runs for k in run.final})
        raise ConfigError(
            f"{role}={key!r} is not a metric of any run; metrics the runs logged: "
            f"{', '.join(logged) or 'none'}"
        )


def pareto_front(points: Sequence[tuple[float, float]], x_higher: bool, y_higher: bool) -> list[int]:
    """Indices of the non-dominated ``points``, in increasing x.

    A point is dominated when another is at least as good on both axes and better on one,
    "good" being larger where ``x_higher``/``y_higher`` and smaller otherwise. Equal points do
    not dominate each other: both are on the front.
    """
    sx, sy = (1.0 if x_higher else -1.0), (1.0 if y_higher else -1.0)
    scored = [(sx * px, sy * py) for px, py in points]  # larger is better on both
    front = [
        i
        for i, (a, b) in enumerate(scored)
        if not any(c >= a and d >= b and (c > a or d > b) for c, d in scored)
    ]
    return sorted(front, key=lambda i: (points[i][0], points[i][1]))


@dataclass
class TradeoffPoints:
    """The plane's content: the plotted runs, the skipped ones (with why), the front, the baseline."""

    runs: list[RunRecord]
    xs: list[float]
    ys: list[float]
    front: list[int]
    skipped: list[tuple[RunRecord, str]]
    baseline: tuple[float, float] | None
    baseline_runs: int


def tradeoff_points(runs: list[RunRecord], tradeoff: Tradeoff) -> TradeoffPoints:
    """Each run at its final ``x``, ``y`` (as the runs table); runs lacking a finite value are skipped.

    The baseline is the mean of the runs' final ``x_bicubic``, ``y_bicubic`` where both are logged.
    """
    assert tradeoff.x and tradeoff.y
    x, y = tradeoff.x, tradeoff.y
    plotted, xs, ys, skipped = [], [], [], []
    for run in runs:
        missing = [m for m in (x, y) if m not in run.final]
        bad = [m for m in (x, y) if m in run.final and not math.isfinite(run.final[m])]
        if missing or bad:
            why = [f"no {m}" for m in missing] + [f"{m} = {fmt(run.final[m])}" for m in bad]
            skipped.append((run, ", ".join(why)))
            continue
        plotted.append(run)
        xs.append(run.final[x])
        ys.append(run.final[y])
    front = pareto_front(list(zip(xs, ys, strict=True)), *tradeoff.directions)
    bx, by = x + BASELINE_SUFFIX, y + BASELINE_SUFFIX
    pairs = [
        (run.final[bx], run.final[by])
        for run in runs
        if math.isfinite(run.final.get(bx, math.nan)) and math.isfinite(run.final.get(by, math.nan))
    ]
    baseline = (
        (float(np.mean([p[0] for p in pairs])), float(np.mean([p[1] for p in pairs]))) if pairs else None
    )
    return TradeoffPoints(plotted, xs, ys, front, skipped, baseline, len(pairs))


def _direction_label(metric: str, higher: bool, axis: str) -> str:
    arrow = {("x", True): "\u2192", ("x", False): "\u2190", ("y", True): "\u2191", ("y", False): "\u2193"}
    return f"{metric}   ({'higher' if higher else 'lower'} is better {arrow[axis, higher]})"


def plot_tradeoff(
    points: TradeoffPoints, tradeoff: Tradeoff, labels: Labels, path: Path, *, varying: list[str]
) -> None:
    """The perception-distortion plane: runs coloured by label, the Pareto front, the bicubic baseline."""
    from matplotlib.lines import Line2D

    assert tradeoff.x and tradeoff.y
    x_up, y_up = tradeoff.directions
    fig = _figure(7.5, 5.5)
    ax = fig.subplots()
    present = [lab for lab in LABELS if any(labels[run.name][0] == lab for run in points.runs)]
    for lab in present:
        idx = [i for i, run in enumerate(points.runs) if labels[run.name][0] == lab]
        ax.scatter(
            [points.xs[i] for i in idx],
            [points.ys[i] for i in idx],
            s=40,
            color=_LABEL_COLORS.get(lab, "black"),
            edgecolor="black",
            linewidth=0.5,
            zorder=3,
            label=lab,
        )
    if points.front:
        ax.plot(
            [points.xs[i] for i in points.front],
            [points.ys[i] for i in points.front],
            ls="--",
            lw=1.2,
            color="black",
            zorder=2,
            label="Pareto front",
        )
    annotated = range(len(points.runs)) if len(points.runs) <= MAX_ANNOTATED_RUNS else points.front
    lo, hi = min(points.xs), max(points.xs)
    for i in annotated:
        run = points.runs[i]
        # Labels of the rightmost points go to their left, so they stay inside the axes.
        right = hi > lo and points.xs[i] > lo + 0.7 * (hi - lo)
        ax.annotate(
            describe_run(run, varying) or run.name,
            (points.xs[i], points.ys[i]),
            xytext=(-4 if right else 4, 4),
            textcoords="offset points",
            ha="right" if right else "left",
            fontsize=7,
        )
    if points.baseline is not None:
        bx, by = points.baseline
        ax.scatter([bx], [by], s=90, marker="*", color="white", edgecolor="black", zorder=4, label="bicubic")
        ax.annotate("bicubic", (bx, by), xytext=(5, -10), textcoords="offset points", fontsize=7)
    # The corner every method would like to reach.
    corner = (0.97 if x_up else 0.03, 0.97 if y_up else 0.03)
    start = (corner[0] + (-0.12 if x_up else 0.12), corner[1] + (-0.12 if y_up else 0.12))
    ax.annotate(
        "better",
        xy=corner,
        xytext=start,
        xycoords="axes fraction",
        textcoords="axes fraction",
        ha="center",
        va="center",
        fontsize=8,
        color="dimgray",
        arrowprops={"arrowstyle": "->", "color": "dimgray"},
    )
    ax.margins(0.12)
    ax.set_xlabel(_direction_label(tradeoff.x, x_up, "x"))
    ax.set_ylabel(_direction_label(tradeoff.y, y_up, "y"))
    ax.grid(alpha=0.3)
    handles, names = ax.get_legend_handles_labels()
    if not handles:
        handles, names = [Line2D([], [])], ["no run"]
    ax.legend(handles, names, fontsize=7, loc="best", title="colour: stability label", title_fontsize=7)
    ax.set_title(f"perception-distortion plane: {len(points.runs)} runs at their final values", fontsize=10)
    fig.savefig(path)


def _add_tradeoff_section(
    page: _Page,
    runs: list[RunRecord],
    labels: Labels,
    tradeoff: Tradeoff,
    out_dir: Path,
    varying: list[str],
) -> None:
    assert tradeoff.x and tradeoff.y
    x, y = tradeoff.x, tradeoff.y
    x_up, y_up = tradeoff.directions
    points = tradeoff_points(runs, tradeoff)
    page.add("h2", "Perception\u2013distortion plane")
    better = f"{'higher' if x_up else 'lower'} `{x}` and {'higher' if y_up else 'lower'} `{y}` are better"
    page.add(
        "p",
        f"Each run at its final `{x}` (distortion) and `{y}` (perceptual quality), as in Blau & "
        f"Michaeli 2018; {better}. The dashed line joins the Pareto front: the runs no other run beats "
        "on both metrics."
        + (
            f" The star is the bicubic baseline (`{x}{BASELINE_SUFFIX}`, `{y}{BASELINE_SUFFIX}`, "
            f"mean over {points.baseline_runs} run(s))."
            if points.baseline is not None
            else ""
        ),
    )
    if points.runs:
        plot_tradeoff(points, tradeoff, labels, out_dir / TRADEOFF_FIGURE, varying=varying)
        page.add("img", ("perception-distortion plane", TRADEOFF_FIGURE))
    else:
        page.add("p", f"No run has finite final values of both `{x}` and `{y}`: nothing to plot.")
    front = set(points.front)
    rows = [
        [
            run.name,
            describe_run(run, varying),
            _cell_text(px),
            _cell_text(py),
            labels[run.name][0],
            "yes" if i in front else "no",
        ]
        for i, (run, px, py) in enumerate(zip(points.runs, points.xs, points.ys, strict=True))
    ]
    if points.baseline is not None:
        rows.append(["bicubic", "baseline", *(_cell_text(v) for v in points.baseline), "", ""])
    if rows:
        page.add("table", (["run", "swept values", x, y, "label", "Pareto front"], rows))
    if points.skipped:
        page.add("p", f"**Skipped from the plot**: {len(points.skipped)} run(s) without both final values:")
        page.add("ul", [f"`{run.name}`: {why}" for run, why in points.skipped])
