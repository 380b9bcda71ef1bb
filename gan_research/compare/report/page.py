"""The report's page and the writing of the whole report (:func:`write_report`).

:class:`_Page` renders the same blocks as report.md and index.html; :class:`_FileNames` gives
the figures safe, bounded, distinct file names; :func:`_staged` writes the report into a
temporary folder moved into place only once every file is written (see the package docstring).
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import os
import re
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gan_research.compare.references import References, check_references
from gan_research.compare.report.axes import (
    Labels,
    _hashable,
    check_axis_key,
    group_runs,
    panel_keys,
    panel_title,
)
from gan_research.compare.report.comparison import (
    add_comparison_section,
    check_group_by,
    comparison_table,
    write_comparison,
)
from gan_research.compare.report.figures import plot_curves, plot_heatmap, plot_samples
from gan_research.compare.report.tables import (
    _cell_text,
    _label_counts,
    heatmap_table,
    run_rows,
    stability_table,
    write_tables,
)
from gan_research.compare.report.tradeoff import Tradeoff, _add_tradeoff_section, check_metric_key
from gan_research.compare.runs import RUNNING, RunRecord, param, swept_keys
from gan_research.compare.stability import LABELS, StabilityRules, label_run
from gan_research.errors import ConfigError
from gan_research.utils.jsonl_logger import STATUSES

# File names stay far below the usual 255-byte limit, however long the key or value they name.
_MAX_NAME = 80


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
    group_by: list[str] | None = None,
    references: References | None = None,
) -> Path:
    """Write runs.csv/json, heatmaps, curves, samples and report.md/index.html; return report.md's path.

    ``x``/``y`` are the swept keys of the heatmap columns/rows (``y`` may be None: one row;
    ``x`` None: no heatmaps, samples as a list). ``source`` names the sweep in the title.
    ``tradeoff``: the perception-distortion plane's metrics (None or both keys None: no plane).
    ``group_by`` (None: one row per run; a list of keys: one row per group, mean ± std) and
    ``references`` (published rows) add the comparison table (table.csv/json) when either is given.
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
    check_group_by(runs, group_by)
    if references is not None:
        check_references(references, runs)
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
            group_by=group_by,
            references=references,
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
    group_by: list[str] | None,
    references: References | None,
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
    if group_by is not None or references is not None:
        comparison = comparison_table(
            runs, labels, metrics=metrics, group_by=group_by, references=references, varying=varying
        )
        write_comparison(out_dir, comparison)
        add_comparison_section(page, comparison)
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
