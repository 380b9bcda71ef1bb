"""The report: aggregation over seeds, the runs table, the figures and the page, robust to broken runs."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import pytest
from PIL import Image

from gan_research.compare.report import heatmap_table, panel_keys, stability_table, write_report
from gan_research.compare.runs import RunRecord, load_runs
from gan_research.compare.stability import StabilityRules, label_run
from gan_research.errors import ConfigError
from tests.compare.conftest import finished_run, write_run

X, Y = "schedule.lr_g", "schedule.lr_d"
METRICS = ["val/modes_recovered", "val/high_quality"]


def test_heatmap_table_averages_over_seeds_with_one_panel_per_loss(sweep: Path) -> None:
    runs = load_runs(sweep)
    keys = panel_keys(runs, X, Y)
    assert keys == ["loss"]  # seed is averaged over; x and y are the axes
    table = heatmap_table(runs, X, Y, "val/modes_recovered", keys)
    assert set(table) == {("hinge",), ("wgan_gp",)}
    hinge, wgan = table[("hinge",)][1e-4], table[("wgan_gp",)][1e-4]
    assert list(hinge) == [1e-4, 1e-3, 1e-2]
    assert hinge[1e-4]["mean"] == 7.0 and hinge[1e-4]["n"] == 2 and hinge[1e-4]["values"] == [8.0, 6.0]
    assert hinge[1e-3]["mean"] == 2.0
    assert wgan[1e-4]["mean"] == 7.5 and wgan[1e-3]["mean"] == 6.5
    # lr_g=0.01: one job failed, one was killed; neither evaluated.
    assert math.isnan(hinge[1e-2]["mean"]) and (hinge[1e-2]["n"], hinge[1e-2]["runs"]) == (0, 2)
    assert 1e-2 not in wgan


def test_stability_table_counts_labels_per_cell(sweep: Path) -> None:
    runs = load_runs(sweep)
    labels = {r.name: label_run(r, rules=StabilityRules()) for r in runs}
    table = stability_table(runs, labels, X, Y, ["loss"])
    hinge = table[("hinge",)][1e-4]
    assert hinge[1e-4]["converged"] == 1.0
    assert hinge[1e-3]["counts"] == {"collapsed": 2} and hinge[1e-3]["converged"] == 0.0
    assert hinge[1e-2]["counts"] == {"failed": 1, "running": 1}
    # Without panels the two losses share a cell: 3 of 4 runs at lr_g=1e-3 are not converged.
    pooled = stability_table(runs, labels, X, Y, [])[()][1e-4][1e-3]
    assert pooled["counts"] == {"collapsed": 2, "converged": 2} and pooled["converged"] == 0.5


def test_write_report_writes_the_table_figures_and_page(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    report = write_report(
        load_runs(sweep), out, x=X, y=Y, metrics=METRICS, curves=["train/d_loss", "train/g_loss"], source="s"
    )
    assert report == out / "report.md"
    with (out / "runs.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == [str(i) for i in range(10)]
    assert list(rows[0])[:5] == ["name", "schedule.lr_g", "schedule.lr_d", "loss", "seed"]
    assert list(rows[0])[5:] == ["status", "label", "reason", "steps", "seconds", "skipped_lines", *METRICS]
    assert rows[2] == {
        "name": "2",
        "schedule.lr_g": "0.001",
        "schedule.lr_d": "0.0001",
        "loss": "hinge",
        "seed": "0",
        "status": "finished",
        "label": "collapsed",
        "reason": "val/modes_recovered = 2/8 (0.25) < min_modes_fraction=0.5",
        "steps": "3000",
        "seconds": "61.2",
        "skipped_lines": "0",
        "val/modes_recovered": "2.0",
        "val/high_quality": "0.8",
    }
    assert [r["label"] for r in rows] == ["converged"] * 2 + ["collapsed"] * 2 + ["converged"] * 4 + [
        "failed",
        "running",
    ]
    assert rows[8]["val/modes_recovered"] == "" and rows[9]["steps"] == "1200"
    # Job 9 was killed mid-line: the cut-off line is counted, and listed on the page.
    assert [r["skipped_lines"] for r in rows] == ["0"] * 9 + ["1"]
    records = json.loads((out / "runs.json").read_text())
    assert records[9]["status"] == "running" and records[9]["val/modes_recovered"] is None
    assert records[0]["schedule.lr_g"] == 0.0001

    expected = [
        "heatmap_stability.png",
        "heatmap_val_modes_recovered.png",
        "heatmap_val_high_quality.png",
        "curves_train_d_loss.png",
        "curves_train_g_loss.png",
        "curves_val_modes_recovered.png",
        "curves_val_high_quality.png",
        "samples_loss=hinge.png",
        "samples_loss=wgan_gp.png",
    ]
    for name in expected:
        with Image.open(out / name) as image:
            assert image.width > 100 and image.height > 100, name
    # The page embeds exactly the figures written, by relative links.
    md = report.read_text()
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert sorted(linked) == sorted(expected)
    assert "| status | 8 | 1 | 1 |" in md
    assert "| label | 6 | 2 | 1 | 1 |" in md
    assert "| 2 | 0.001 | 0.0001 | hinge | 0 | finished | collapsed |" in md
    assert "**diverged**" in md and "max_relative_oscillation" not in md  # rules in words, short
    assert "**Unreadable metrics.jsonl lines** in 1 run(s)" in md and "- `9`: line 13" in md
    page = (out / "index.html").read_text()
    assert sorted(re.findall(r'<img src="([^"]+)"', page)) == sorted(expected)
    assert "<b>diverged</b>" in page and "<td>collapsed</td>" in page
    assert "<li><code>9</code>: line 13</li>" in page
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*expected, "runs.csv", "runs.json", "report.md", "index.html"]
    )


def test_unknown_axis_key_names_it_and_the_swept_keys(sweep: Path, tmp_path: Path) -> None:
    runs = load_runs(sweep)
    with pytest.raises(ConfigError) as err:
        write_report(runs, tmp_path / "r", x="schedule.lr_gg", y=Y, metrics=[], curves=[])
    message = str(err.value)
    assert "x='schedule.lr_gg' is not a key of any run" in message
    assert "['schedule.lr_g', 'schedule.lr_d', 'loss', 'seed']" in message
    assert not (tmp_path / "r").exists()
    # A key that is in the config but not swept is a valid (single-valued) axis.
    write_report(runs, tmp_path / "r", x="schedule.beta1", y=None, metrics=[], curves=[])
    with pytest.raises(ConfigError, match=r"y=.schedule\.lr_d. needs an x key"):
        write_report(runs, tmp_path / "r", x=None, y=Y, metrics=[], curves=[])


def test_report_of_runs_without_metrics_or_axes(tmp_path: Path) -> None:
    # Nothing logged anywhere, nothing swept, x absent: a table and a list of empty sample tiles.
    for i in range(3):
        write_run(tmp_path / "sweep" / str(i))
    runs = load_runs(tmp_path / "sweep")
    report = write_report(runs, tmp_path / "out", x=None, y=None, metrics=METRICS, curves=["train/d_loss"])
    md = report.read_text()
    assert "`train/d_loss`: no run logged it." in md
    assert (tmp_path / "out" / "samples.png").is_file()
    assert not list((tmp_path / "out").glob("heatmap_*"))
    # Single-valued axes and metrics no run logged still draw (grey) heatmaps.
    write_report(runs, tmp_path / "out2", x="schedule.lr_g", y="seed", metrics=["val/fid"], curves=[])
    md2 = (tmp_path / "out2" / "report.md").read_text()
    assert "`val/fid`: no run logged a finite final value." in md2
    assert (tmp_path / "out2" / "heatmap_val_fid.png").is_file()


def test_many_runs_share_colours_by_x_instead_of_a_legend(tmp_path: Path) -> None:
    job = 0
    for lr_g in (1e-4, 3e-4, 1e-3, 3e-3):
        for lr_d in (1e-4, 1e-3):
            for seed in (0, 1):
                finished_run(
                    tmp_path / "sweep" / str(job), lr_g, lr_d, seed, "hinge", 8, samples=job % 3 == 0
                )
                job += 1
    runs = load_runs(tmp_path / "sweep")
    # A NaN string and a non-finite final value do not break the figures.
    runs[0].history["train/d_loss"][5] = (600, math.nan)
    runs[1].final["val/high_quality"] = math.inf
    out = tmp_path / "out"
    write_report(runs, out, x=X, y=Y, metrics=METRICS, curves=["train/d_loss"])
    assert len(runs) == 16 and (out / "curves_train_d_loss.png").is_file()
    assert json.loads((out / "runs.json").read_text())[1]["val/high_quality"] == "inf"
    table = heatmap_table(runs, X, Y, "val/high_quality", [])
    assert table[()][1e-4][1e-4]["n"] == 1  # the inf is not averaged in
    with Image.open(out / "samples.png") as image:
        # 2 lr_d rows x (4 lr_g x 2 seeds) columns of tiles.
        assert image.width > 2.5 * image.height


def test_runs_must_have_distinct_names(tmp_path: Path) -> None:
    runs = [RunRecord(path=Path("a"), name="same"), RunRecord(path=Path("b"), name="same")]
    with pytest.raises(ConfigError, match="distinct names"):
        write_report(runs, tmp_path, x=None, y=None, metrics=[], curves=[])
