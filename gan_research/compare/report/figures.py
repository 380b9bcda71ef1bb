"""The report's figures: heatmaps over the two swept keys, metric curves, the runs' last sample grids.

Drawn with matplotlib's ``Figure`` API on the Agg canvas rather than pyplot (why: the package
docstring), imported only when a figure is drawn. :func:`_figure` also makes the
perception-distortion plane's (:mod:`~gan_research.compare.report.tradeoff`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from gan_research.compare.report.axes import (
    Labels,
    Panel,
    _hashable,
    _short_keys,
    _sort_key,
    describe_run,
    fmt,
    group_runs,
    panel_title,
    sorted_values,
)
from gan_research.compare.runs import RunRecord, param

# Above this many runs, curve plots drop per-run legends and colour by the x value.
MAX_LEGEND_RUNS = 12
_DPI = 100


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
