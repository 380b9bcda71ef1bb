"""The comparison report of a sweep: a table, heatmaps over two swept keys, curves, samples, a page.

Written for the question a learning-rate sweep asks (which (lr_G, lr_D) cells train
stably, and how well): every figure is laid out on the sweep's own axes, ``x``
(columns) and ``y`` (rows), cells averaging over seeds, with one panel per value
of any other swept key (e.g. one per loss). Figures use matplotlib's ``Figure``
API with the Agg canvas rather than pyplot: no global backend state to set on a
headless node, and no open-figure registry to leak in a long sweep.

The report is written into a temporary folder beside ``out_dir`` and moved into
place only once every file is written, so a failure leaves no half report; file
names derived from keys and values are sanitised and bounded (a long name is cut
and given a short hash), since swept values can be arbitrarily long.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import html
import json
import math
import os
import re
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gan_research.compare.runs import RUNNING, RunRecord, has_param, param, swept_keys
from gan_research.compare.stability import LABELS, StabilityRules, label_run
from gan_research.errors import ConfigError
from gan_research.utils.jsonl_logger import STATUSES

# Keys that are never a panel of their own: heatmap cells average over them.
AVERAGED_KEYS = ("seed",)
# Above this many runs, curve plots drop per-run legends and colour by the x value.
MAX_LEGEND_RUNS = 12
_ABBREV = {"converged": "conv", "oscillating": "osc", "diverged": "div", "collapsed": "coll"}
_ABBREV.update({"failed": "fail", "running": "run"})
_DPI = 100
# File names stay far below the usual 255-byte limit, however long the key or value they name.
_MAX_NAME = 80
# The perception-distortion plane's figure.
TRADEOFF_FIGURE = "tradeoff.png"

Panel = tuple[Hashable, ...]
Labels = dict[str, tuple[str, str]]


# ----------------------------------------------------------------------------- axes and grouping


def check_axis_key(runs: list[RunRecord], key: str, role: str) -> None:
    """Refuse an axis key that no run has (a typo would otherwise give an empty report)."""
    if not any(has_param(run, key) for run in runs):
        raise ConfigError(
            f"{role}={key!r} is not a key of any run's overrides or config; "
            f"swept keys: {swept_keys(runs) or 'none'}"
        )


def panel_keys(runs: list[RunRecord], x: str | None, y: str | None) -> list[str]:
    """Swept keys besides ``x``, ``y`` and the seed whose value differs between runs."""
    keys = []
    for key in swept_keys(runs):
        if key in (x, y) or key in AVERAGED_KEYS:
            continue
        if len({_hashable(param(run, key)) for run in runs}) > 1:
            keys.append(key)
    return keys


def _hashable(value: Any) -> Hashable:
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return str(value)
    return value


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, 0.0)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (1, float(value))
    return (2, str(value))


def sorted_values(values: Iterable[Any]) -> list[Any]:
    """Distinct values, numbers in numeric order (so 1e-4 < 2e-4 < 1e-3), then strings."""
    return sorted(set(values), key=_sort_key)


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def group_runs(
    runs: list[RunRecord], x: str | None, y: str | None, panel_keys: list[str]
) -> dict[Panel, dict[Any, dict[Any, list[RunRecord]]]]:
    """``{panel values: {y value: {x value: [runs]}}}``; a null axis has the single value None."""
    groups: dict[Panel, dict[Any, dict[Any, list[RunRecord]]]] = {}
    for run in runs:
        panel = tuple(_hashable(param(run, k)) for k in panel_keys)
        xv = _hashable(param(run, x)) if x else None
        yv = _hashable(param(run, y)) if y else None
        groups.setdefault(panel, {}).setdefault(yv, {}).setdefault(xv, []).append(run)
    return {p: groups[p] for p in sorted(groups, key=lambda p: tuple(_sort_key(v) for v in p))}


def heatmap_table(
    runs: list[RunRecord], x: str | None, y: str | None, metric: str, panel_keys: list[str]
) -> dict[Panel, dict[Any, dict[Any, dict[str, Any]]]]:
    """``{panel: {y: {x: {"mean", "n", "runs", "values"}}}}`` of a final metric.

    ``mean`` averages the finite final values of the cell's runs (seeds and any
    unswept repetition); ``n`` counts them, ``runs`` counts the cell's runs (a run
    that diverged or never evaluated is in ``runs`` but not in ``n``); ``mean`` is
    NaN when ``n`` is 0.
    """
    table: dict[Panel, dict[Any, dict[Any, dict[str, Any]]]] = {}
    for panel, rows in group_runs(runs, x, y, panel_keys).items():
        for yv, cols in rows.items():
            for xv, cell in cols.items():
                values = [run.final.get(metric, math.nan) for run in cell]
                finite = [v for v in values if math.isfinite(v)]
                table.setdefault(panel, {}).setdefault(yv, {})[xv] = {
                    "mean": float(np.mean(finite)) if finite else math.nan,
                    "n": len(finite),
                    "runs": len(cell),
                    "values": values,
                }
    return table


def stability_table(
    runs: list[RunRecord], labels: Labels, x: str | None, y: str | None, panel_keys: list[str]
) -> dict[Panel, dict[Any, dict[Any, dict[str, Any]]]]:
    """``{panel: {y: {x: {"converged": fraction, "counts": Counter of labels, "runs": n}}}}``."""
    table: dict[Panel, dict[Any, dict[Any, dict[str, Any]]]] = {}
    for panel, rows in group_runs(runs, x, y, panel_keys).items():
        for yv, cols in rows.items():
            for xv, cell in cols.items():
                counts = Counter(labels[run.name][0] for run in cell)
                table.setdefault(panel, {}).setdefault(yv, {})[xv] = {
                    "converged": counts["converged"] / len(cell),
                    "counts": counts,
                    "runs": len(cell),
                }
    return table


def _label_counts(cell: dict[str, Any]) -> str:
    return "\n".join(f"{cell['counts'][lab]} {_ABBREV[lab]}" for lab in LABELS if cell["counts"][lab])


def panel_title(keys: list[str], panel: Panel) -> str:
    return ", ".join(f"{k}={fmt(v)}" for k, v in zip(keys, panel, strict=True)) or "all runs"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_") or "x"


class _FileNames:
    """Safe, bounded, distinct file names for the report's figures.

    ``name("heatmap", "val/fid")`` is ``heatmap_val_fid.png``; a name longer than ``_MAX_NAME``
    is cut and ends in a hash of the full text, and two texts that sanitise alike get distinct names.
    """

    def __init__(self) -> None:
        self._taken: dict[str, str] = {}

    def name(self, prefix: str, text: str, ext: str = "png") -> str:
        base = f"{prefix}_{_slug(text)}"
        digest = hashlib.sha1(text.encode()).hexdigest()[:8]
        if len(base) > _MAX_NAME:
            base = f"{base[: _MAX_NAME - 9]}-{digest}"
        if self._taken.get(base, text) != text:
            base = f"{base[: _MAX_NAME - 9]}-{digest}"
        self._taken[base] = text
        return f"{base}.{ext}"


# ----------------------------------------------------------------------------- table


def run_rows(
    runs: list[RunRecord], labels: Labels, x: str | None, y: str | None, metrics: list[str]
) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, rows) of the runs table: name, swept keys (and x, y), outcome, final metrics."""
    keys = swept_keys(runs)
    keys += [k for k in (x, y) if k and k not in keys]
    columns = ["name", *keys, "status", "label", "reason", "steps", "seconds", "skipped_lines", *metrics]
    rows = []
    for run in runs:
        label, reason = labels[run.name]
        row: dict[str, Any] = {"name": run.name, **{k: param(run, k) for k in keys}}
        row.update(status=run.status, label=label, reason=reason, steps=run.steps, seconds=run.seconds)
        # How many metrics.jsonl lines could not be read: the label was judged without them.
        row["skipped_lines"] = len(run.skipped_lines)
        row.update({m: run.final.get(m) for m in metrics})
        rows.append(row)
    return columns, rows


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # as metrics.jsonl writes them: JSON has no NaN
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_tables(out_dir: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    with (out_dir / "runs.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row[k] is None else row[k] for k in columns})
    (out_dir / "runs.json").write_text(json.dumps([_jsonable(r) for r in rows], indent=2) + "\n")


# ----------------------------------------------------------------------------- figures


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=_DPI, layout="constrained")


def _cmap(name: str) -> Any:
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad="lightgrey")


def plot_heatmap(
    table: dict[Panel, dict[Any, dict[Any, dict[str, Any]]]],
    keys: list[str],
    x: str,
    y: str | None,
    path: Path,
    *,
    title: str,
    value: str,
    annotate: Any,
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
) -> None:
    """One heatmap panel per panel value; cells with no value are grey, every cell is annotated."""
    xs = sorted_values(xv for rows in table.values() for cols in rows.values() for xv in cols)
    ys = sorted_values(yv for rows in table.values() for yv in rows)
    grids = {}
    for panel, rows in table.items():
        grid = np.full((len(ys), len(xs)), np.nan)
        for i, yv in enumerate(ys):
            for j, xv in enumerate(xs):
                cell = rows.get(yv, {}).get(xv)
                if cell is not None:
                    grid[i, j] = cell[value]
        grids[panel] = grid
    finite = np.concatenate([g[np.isfinite(g)] for g in grids.values()]) if grids else np.array([])
    lo = vmin if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    if hi <= lo:  # a single value: give the colour scale some width
        lo, hi = lo - 0.5, hi + 0.5
    n = max(1, len(grids))
    width = max(3.5, 1.0 * len(xs) + 2.0)
    height = max(2.8, 0.7 * len(ys) + 1.8)
    fig = _figure(width * n, height)
    axes = fig.subplots(1, n, squeeze=False)[0]
    colors = _cmap(cmap)
    image = None
    for ax, (panel, grid) in zip(axes, grids.items(), strict=False):
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=colors, vmin=lo, vmax=hi, aspect="auto")
        ax.set_xticks(range(len(xs)), [fmt(v) for v in xs], rotation=30, fontsize=8)
        ax.set_yticks(range(len(ys)), [fmt(v) for v in ys], fontsize=8)
        ax.set_xlabel(x)
        ax.set_ylabel(y or "")
        ax.set_title(panel_title(keys, panel), fontsize=9)
        for i, yv in enumerate(ys):
            for j, xv in enumerate(xs):
                cell = table[panel].get(yv, {}).get(xv)
                if cell is None:
                    continue
                shade = (grid[i, j] - lo) / (hi - lo) if math.isfinite(grid[i, j]) else 1.0
                color = "white" if cmap == "viridis" and shade < 0.5 else "black"
                ax.text(j, i, annotate(cell), ha="center", va="center", fontsize=7, color=color)
    if image is not None:
        fig.colorbar(image, ax=list(axes), shrink=0.8, label=value)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path)


def _smooth(steps: list[int], values: list[float], k: int) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(s, v) for s, v in zip(steps, values, strict=True) if math.isfinite(v)]
    s = np.asarray([p[0] for p in pairs], dtype=float)
    v = np.asarray([p[1] for p in pairs], dtype=float)
    if k <= 1 or len(v) < k:
        return s, v
    return s[k - 1 :], np.convolve(v, np.ones(k) / k, mode="valid")


def _short_keys(keys: list[str]) -> dict[str, str]:
    """``schedule.lr_g`` -> ``lr_g`` where the last component is unambiguous."""
    last = Counter(k.rsplit(".", 1)[-1] for k in keys)
    return {k: k.rsplit(".", 1)[-1] if last[k.rsplit(".", 1)[-1]] == 1 else k for k in keys}


def describe_run(run: RunRecord, keys: list[str]) -> str:
    """The run's values of ``keys``, short names, e.g. ``lr_g=0.001 lr_d=0.0004 seed=1``."""
    short = _short_keys(keys)
    return " ".join(f"{short[k]}={fmt(param(run, k))}" for k in keys)


def plot_curves(
    runs: list[RunRecord],
    labels: Labels,
    key: str,
    path: Path,
    *,
    x: str | None,
    keys: list[str],
    varying: list[str],
    smooth: int,
) -> bool:
    """Overlay ``key``'s curve of every run; False (and no file) when no run logged it."""
    from matplotlib.lines import Line2D

    with_curve = [run for run in runs if any(math.isfinite(v) for _, v in run.history.get(key, []))]
    if not with_curve:
        return False
    many = len(with_curve) > MAX_LEGEND_RUNS
    panels: dict[Panel, list[RunRecord]] = {}
    for run in with_curve:
        panel = tuple(_hashable(param(run, k)) for k in keys) if many else ()
        panels.setdefault(panel, []).append(run)
    panels = {p: panels[p] for p in sorted(panels, key=lambda p: tuple(_sort_key(v) for v in p))}
    xs = sorted_values(_hashable(param(run, x)) for run in with_curve) if x else []
    cmap = _cmap("viridis")
    n = len(panels)
    fig = _figure(6.5 * min(n, 3), 4.0 * math.ceil(n / 3))
    axes = fig.subplots(math.ceil(n / 3), min(n, 3), squeeze=False).ravel()
    everything: list[np.ndarray] = []
    for ax, (panel, members) in zip(axes, panels.items(), strict=False):
        for i, run in enumerate(members):
            history = run.history.get(key, [])
            s, v = _smooth([p[0] for p in history], [p[1] for p in history], smooth)
            if not len(v):
                continue
            everything.append(v)
            if many:
                xv = _hashable(param(run, x)) if x else None
                color = cmap(xs.index(xv) / max(1, len(xs) - 1)) if x else cmap(i / max(1, len(members) - 1))
                ax.plot(s, v, lw=0.7, alpha=0.7, color=color)
            else:
                ax.plot(
                    s, v, lw=1.2, label=f"{describe_run(run, varying) or run.name} [{labels[run.name][0]}]"
                )
        ax.set_title(panel_title(keys, panel) if many else key, fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        if many and x:
            # One entry per x value, in order, instead of one per run.
            handles = [
                Line2D([], [], color=cmap(j / max(1, len(xs) - 1)), label=f"{x}={fmt(xv)}")
                for j, xv in enumerate(xs)
            ]
            ax.legend(handles=handles, fontsize=6, loc="best")
        elif not many:
            ax.legend(fontsize=6, loc="best")
    for ax in axes[n:]:
        ax.set_visible(False)
    if everything:
        # A diverged run's 1e6 would flatten every other curve; keep the bulk in view.
        values = np.concatenate(everything)
        p1, p99 = np.percentile(values, [1, 99])
        if values.max() - values.min() > 10 * max(p99 - p1, 1e-12):
            margin = 0.1 * max(p99 - p1, 1e-12)
            for ax in axes[:n]:
                ax.set_ylim(p1 - margin, p99 + margin)
    fig.suptitle(f"{key} (moving average over {smooth} points)", fontsize=10)
    fig.savefig(path)
    return True


def _load_image(path: Path | None) -> np.ndarray | None:
    if path is None:
        return None
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError):
        return None


def _tile(ax: Any, run: RunRecord | None, title: str, image: np.ndarray | None, aspect: float) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=6)
    if image is not None:
        ax.imshow(image, interpolation="nearest")
        return
    # An empty tile keeps the shape of the others, so the grid stays aligned.
    ax.set_box_aspect(aspect)
    ax.set_facecolor("lightgrey")
    if run is not None:
        ax.text(0.5, 0.5, "no samples", ha="center", va="center", fontsize=7, transform=ax.transAxes)
    else:
        ax.set_axis_off()


def _tile_title(head: str, run: RunRecord, others: list[str], labels: Labels) -> str:
    return head + "\n" + " ".join(filter(None, [describe_run(run, others), f"[{labels[run.name][0]}]"]))


def plot_samples(
    runs: list[RunRecord],
    labels: Labels,
    path: Path,
    *,
    x: str | None,
    y: str | None,
    shown: list[str],
    title: str,
) -> None:
    """The runs' last sample grids: on the (y rows x x columns) grid, seeds side by side, or as a list.

    ``shown``: the keys whose values title each tile besides x and y (the swept ones).
    """
    images = {run.name: _load_image(run.last_sample) for run in runs}
    first = next((im for im in images.values() if im is not None), None)
    aspect = first.shape[0] / first.shape[1] if first is not None else 1.0
    others = [k for k in shown if k not in (x, y)]
    if x:
        cells = group_runs(runs, x, y, [])[()]
        xs = sorted_values(xv for cols in cells.values() for xv in cols)
        ys = sorted_values(cells)
        per = max(len(cell) for cols in cells.values() for cell in cols.values())
        fig = _figure(2.0 * len(xs) * per + 0.5, 2.0 * aspect * len(ys) + 0.8)
        axes = fig.subplots(len(ys), len(xs) * per, squeeze=False)
        short = _short_keys([k for k in (x, y) if k])
        for i, yv in enumerate(ys):
            for j, xv in enumerate(xs):
                cell = cells.get(yv, {}).get(xv, [])
                head = f"{short[x]}={fmt(xv)}" + (f" {short[y]}={fmt(yv)}" if y else "")
                for k in range(per):
                    run = cell[k] if k < len(cell) else None
                    tile_title = _tile_title(head, run, others, labels) if run else ""
                    _tile(axes[i, j * per + k], run, tile_title, images[run.name] if run else None, aspect)
    else:
        cols = min(6, len(runs))
        rows = math.ceil(len(runs) / cols)
        fig = _figure(2.0 * cols + 0.5, 2.0 * aspect * rows + 0.8)
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        for ax, run in zip(axes, runs, strict=False):
            _tile(ax, run, _tile_title(run.name, run, others, labels), images[run.name], aspect)
        for ax in axes[len(runs) :]:
            ax.set_axis_off()
    fig.suptitle(title, fontsize=9)
    fig.savefig(path)


# ----------------------------------------------------------------------------- perception-distortion plane

# Metric names whose last component holds one of these are higher-is-better; every other metric
# (FID, KID, LPIPS, L1, KL, ...) is lower-is-better. `tradeoff.x_higher_is_better` overrides it.
HIGHER_IS_BETTER = (
    "psnr",
    "ssim",
    "accuracy",
    "modes_recovered",
    "modes_covered",
    "classes_covered",
    "coverage",
    "high_quality",
    "precision",
    "recall",
    "inception_score",
    "diversity",
)
# The suffix of a baseline's metric logged beside the run's own (val/psnr_y_bicubic).
BASELINE_SUFFIX = "_bicubic"
# Above this many plotted runs only the Pareto front's points are annotated with their values.
MAX_ANNOTATED_RUNS = 30
_LABEL_COLORS = {
    "converged": "tab:green",
    "oscillating": "tab:orange",
    "diverged": "tab:red",
    "collapsed": "tab:purple",
    "failed": "tab:gray",
    "running": "tab:blue",
}


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is better, from its name (:data:`HIGHER_IS_BETTER`)."""
    name = metric.rsplit("/", 1)[-1].lower()
    return any(token in name for token in HIGHER_IS_BETTER)


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


# ----------------------------------------------------------------------------- page


class _Page:
    """Blocks rendered twice, as Markdown and as a plain HTML page with the same content."""

    def __init__(self) -> None:
        self.blocks: list[tuple[str, Any]] = []

    def add(self, kind: str, content: Any) -> None:
        self.blocks.append((kind, content))

    def markdown(self) -> str:
        out = []
        for kind, content in self.blocks:
            if kind in ("h1", "h2"):
                out.append(("# " if kind == "h1" else "## ") + content)
            elif kind == "p":
                out.append(content)
            elif kind == "ul":
                out.append("\n".join(f"- {item}" for item in content))
            elif kind == "table":
                columns, rows = content
                esc = [[_md_cell(c) for c in row] for row in [columns, *rows]]
                lines = ["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(columns)]
                lines += ["| " + " | ".join(row) + " |" for row in esc[1:]]
                out.append("\n".join(lines))
            elif kind == "img":
                alt, src = content
                out.append(f"![{alt}]({src})")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        out = [
            "<!DOCTYPE html>",
            '<html><head><meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:12px}"
            "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}img{max-width:100%}</style>",
            "</head><body>",
        ]
        for kind, content in self.blocks:
            if kind in ("h1", "h2"):
                out.append(f"<{kind}>{_inline(content)}</{kind}>")
            elif kind == "p":
                out.append(f"<p>{_inline(content)}</p>")
            elif kind == "ul":
                out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in content) + "</ul>")
            elif kind == "table":
                columns, rows = content
                head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
                body = "".join(
                    "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
                )
                out.append(f"<table><tr>{head}</tr>{body}</table>")
            elif kind == "img":
                alt, src = content
                out.append(f'<p><img src="{html.escape(src)}" alt="{html.escape(alt)}"></p>')
        out.append("</body></html>")
        return "\n".join(out) + "\n"


def _md_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _inline(text: str) -> str:
    """The Markdown marks the page uses (**bold**, `code`, [links](...)) as HTML."""
    text = html.escape(text)
    text = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r'<a href="\2">\1</a>', text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def skipped_lines_note(run: RunRecord) -> str:
    """``line 14`` / ``lines 3, 14`` / ``12 lines (3, 4, 5, 6, 7, ...)``: the unreadable lines of a run."""
    lines = run.skipped_lines
    shown = ", ".join(str(n) for n in lines[:5]) + (", ..." if len(lines) > 5 else "")
    if len(lines) == 1:
        return f"line {shown}"
    return f"lines {shown}" if len(lines) <= 5 else f"{len(lines)} lines ({shown})"


@contextlib.contextmanager
def _staged(out_dir: Path) -> Iterator[Path]:
    """A temporary folder beside ``out_dir`` to write into; its files replace ``out_dir``'s on success.

    On any failure the folder is removed, with any parent of ``out_dir`` made for it, so the
    report is either written whole or not at all. Files of an earlier report that this one does
    not rewrite stay.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"out={out_dir} is a file; pass out=<a folder> for the report")
    made = [p for p in (out_dir.parent, *out_dir.parent.parents) if not p.exists()]  # deepest first
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        # Not tempfile.mkdtemp: its 0o700 mode would become the report folder's; mkdir honours the umask.
        stage = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        stage.mkdir()
    except OSError as err:
        for parent in made:
            with contextlib.suppress(OSError):
                parent.rmdir()
        raise ConfigError(
            f"out={out_dir} cannot be written ({err.strerror or err}); pass out=<a writable folder>"
        ) from err
    try:
        yield stage
        if out_dir.is_dir():
            for path in sorted(stage.iterdir()):
                os.replace(path, out_dir / path.name)
            stage.rmdir()
        else:
            os.replace(stage, out_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        for parent in made:
            with contextlib.suppress(OSError):
                parent.rmdir()
        raise


def write_report(
    runs: list[RunRecord],
    out_dir: str | Path,
    *,
    x: str | None,
    y: str | None,
    metrics: list[str],
    curves: list[str],
    rules: StabilityRules | None = None,
    source: str | None = None,
    smooth: int = 5,
    tradeoff: Tradeoff | None = None,
) -> Path:
    """Write runs.csv/json, heatmaps, curves, samples and report.md/index.html; return report.md's path.

    ``x``/``y`` are the swept keys of the heatmap columns/rows (``y`` may be None: one row;
    ``x`` None: no heatmaps, samples as a list). ``source`` names the sweep in the title.
    ``tradeoff``: the perception-distortion plane's metrics (None or both keys None: no plane).
    Every check runs before anything is written, and the files appear in ``out_dir`` only when
    all of them were written (:func:`_staged`).
    """
    if not runs:
        raise ConfigError("no runs to compare")
    if y and not x:
        raise ConfigError(f"y={y!r} needs an x key too (x is the heatmap columns, y the rows)")
    if x and x == y:
        raise ConfigError(f"x and y are both {x!r}; pick two different swept keys")
    for key, role in ((x, "x"), (y, "y")):
        if key:
            check_axis_key(runs, key, role)
    if len({run.name for run in runs}) != len(runs):
        raise ConfigError(f"runs must have distinct names, got {[r.name for r in runs]}")
    tradeoff = tradeoff or Tradeoff()
    if tradeoff.enabled:
        for key, role in ((tradeoff.x, "tradeoff.x"), (tradeoff.y, "tradeoff.y")):
            check_metric_key(runs, str(key), role)
    rules = rules or StabilityRules()
    out_dir = Path(out_dir)
    labels: Labels = {run.name: label_run(run, rules=rules) for run in runs}
    with _staged(out_dir) as stage:
        _write_report_files(
            runs,
            labels,
            stage,
            x=x,
            y=y,
            metrics=metrics,
            curves=curves,
            rules=rules,
            source=source,
            smooth=smooth,
            tradeoff=tradeoff,
        )
    return out_dir / "report.md"


def _write_report_files(
    runs: list[RunRecord],
    labels: Labels,
    out_dir: Path,
    *,
    x: str | None,
    y: str | None,
    metrics: list[str],
    curves: list[str],
    rules: StabilityRules,
    source: str | None,
    smooth: int,
    tradeoff: Tradeoff,
) -> None:
    names = _FileNames()
    keys = panel_keys(runs, x, y)
    varying = [k for k in swept_keys(runs) if len({_hashable(param(r, k)) for r in runs}) > 1]
    columns, rows = run_rows(runs, labels, x, y, metrics)
    write_tables(out_dir, columns, rows)

    page = _Page()
    title = f"gan-compare: {source or 'sweep'}"
    page.add("h1", title)
    page.add(
        "p",
        f"Source: `{source}` · {len(runs)} runs · generated {time.strftime('%Y-%m-%d %H:%M')}"
        + (f" · columns `{x}`" if x else "")
        + (f", rows `{y}`" if y else "")
        + (f" · one panel per {', '.join(f'`{k}`' for k in keys)}" if keys else ""),
    )
    page.add("h2", "Outcome")
    status_counts = Counter(run.status for run in runs)
    label_counts = Counter(label for label, _ in labels.values())
    statuses = [s for s in (*STATUSES, RUNNING) if status_counts[s]]
    statuses += sorted(set(status_counts) - set(statuses))
    page.add("table", (["", *statuses], [["status", *[status_counts[s] for s in statuses]]]))
    present = [lab for lab in LABELS if label_counts[lab]]
    page.add("table", (["", *present], [["label", *[label_counts[lab] for lab in present]]]))
    page.add("h2", "Stability rules (first match wins)")
    page.add("ul", rules.describe())
    page.add("h2", "Runs")
    page.add("p", "Also as [runs.csv](runs.csv) and [runs.json](runs.json).")
    damaged = [run for run in runs if run.skipped_lines]
    if damaged:
        # A run killed mid-write leaves a cut-off line; its label is judged on the lines that remain.
        page.add(
            "p",
            f"**Unreadable metrics.jsonl lines** in {len(damaged)} run(s), skipped (column `skipped_lines`; "
            "each run is judged on the lines that remain):",
        )
        page.add("ul", [f"`{run.name}`: {skipped_lines_note(run)}" for run in damaged])
    page.add("table", (columns, [[_cell_text(row[c]) for c in columns] for row in rows]))

    if x:
        page.add("h2", "Heatmaps")
        page.add("p", "Cell: mean over the cell's runs (seeds), with n finite values / runs; grey: no run.")
        stab = stability_table(runs, labels, x, y, keys)
        plot_heatmap(
            stab,
            keys,
            x,
            y,
            out_dir / "heatmap_stability.png",
            title="fraction of runs converged",
            value="converged",
            annotate=_label_counts,
            cmap="RdYlGn",
            vmin=0.0,
            vmax=1.0,
        )
        page.add("img", ("stability", "heatmap_stability.png"))
        for metric in metrics:
            table = heatmap_table(runs, x, y, metric, keys)
            name = names.name("heatmap", metric)
            plot_heatmap(
                table,
                keys,
                x,
                y,
                out_dir / name,
                title=f"final {metric}",
                value="mean",
                annotate=lambda c: (f"{c['mean']:.3g}" if c["n"] else "n/a") + f"\nn={c['n']}/{c['runs']}",
            )
            if not any(c["n"] for rows_ in table.values() for cols in rows_.values() for c in cols.values()):
                page.add("p", f"`{metric}`: no run logged a finite final value.")
            page.add("img", (f"final {metric}", name))

    if tradeoff.enabled:
        _add_tradeoff_section(page, runs, labels, tradeoff, out_dir, varying)

    page.add("h2", "Curves")
    for key in dict.fromkeys([*curves, *metrics]):
        name = names.name("curves", key)
        if plot_curves(runs, labels, key, out_dir / name, x=x, keys=keys, varying=varying, smooth=smooth):
            page.add("img", (key, name))
        else:
            page.add("p", f"`{key}`: no run logged it.")

    page.add("h2", "Samples")
    page.add("p", "The last sample grid of each run, titled with its swept values and label.")
    sample_groups = group_runs(runs, None, None, keys)
    for panel, grouped in sample_groups.items():
        members = grouped[None][None]
        name = "samples.png" if len(sample_groups) == 1 else names.name("samples", panel_title(keys, panel))
        shown = [k for k in varying if k not in keys]
        plot_samples(
            members,
            labels,
            out_dir / name,
            x=x,
            y=y,
            shown=shown,
            title=f"last samples: {panel_title(keys, panel)}",
        )
        if len(sample_groups) > 1:
            page.add("p", panel_title(keys, panel))
        page.add("img", (f"samples {panel_title(keys, panel)}", name))

    (out_dir / "report.md").write_text(page.markdown())
    (out_dir / "index.html").write_text(page.html(title))
