"""The perception-distortion plane of gan-compare (Blau & Michaeli 2018): front, baseline, skips, errors."""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig
from PIL import Image

from gan_research.compare import cli, report
from gan_research.compare.report import (
    TRADEOFF_FIGURE,
    Tradeoff,
    higher_is_better,
    pareto_front,
    tradeoff_points,
    write_report,
)
from gan_research.compare.runs import load_runs
from gan_research.config import CONFIG_DIR
from gan_research.errors import ConfigError
from tests.compare.conftest import smooth_losses, status_line, training_lines, write_run

PSNR, FID = "val/psnr_y", "val/fid_digits"
PLANE = Tradeoff(x=PSNR, y=FID)
# adversarial weight -> (final PSNR, final FID): more adversarial weight, less PSNR, better FID,
# until 0.1 is worse than 0.01 on both (off the front).
RUNS = {0.0: (24.0, 30.0), 0.001: (23.5, 20.0), 0.01: (22.0, 12.0), 0.1: (20.0, 15.0)}


def sr_run(run_dir: Path, weight: float, final: dict[str, float], status: str = "finished") -> Path:
    """A finished SRGAN run of a sweep over model.adversarial_weight with ``final`` metrics."""
    d, g = smooth_losses(10)
    return write_run(
        run_dir,
        overrides=[f"model.adversarial_weight={weight}", "seed=0"],
        config={"seed": 0, "model": {"adversarial_weight": weight}, "schedule": {"max_steps": 1000}},
        lines=[*training_lines(d, g, {500: final}), status_line(status, step=1000, **final)],
    )


def sr_sweep(root: Path, *, bicubic: bool = True) -> Path:
    for job, (weight, (psnr, fid)) in enumerate(RUNS.items()):
        final = {PSNR: psnr, FID: fid, "val/ssim_y": 0.8}
        if bicubic:
            final |= {f"{PSNR}_bicubic": 21.0 + 0.2 * (job % 2), f"{FID}_bicubic": 45.0}
        sr_run(root / str(job), weight, final)
    # Evaluated without the FID (e.g. killed before the classifier was ready), and one that never evaluated.
    sr_run(root / "4", 1.0, {PSNR: 19.0})
    write_run(root / "5", overrides=["model.adversarial_weight=10.0", "seed=0"], lines=[{"status": "failed"}])
    return root


@pytest.fixture(autouse=True)
def _no_sample_grids(monkeypatch: pytest.MonkeyPatch) -> None:
    # The sample grids are test_report.py's; drawing them here would only slow these tests down.
    monkeypatch.setattr(report.page, "plot_samples", lambda *args, **kwargs: None)


def _report(tmp_path: Path, tradeoff: Tradeoff = PLANE, *, bicubic: bool = True) -> Path:
    runs = load_runs(sr_sweep(tmp_path / "sweep", bicubic=bicubic))
    return write_report(runs, tmp_path / "out", x=None, y=None, metrics=[], curves=[], tradeoff=tradeoff)


def _section(text: str) -> str:
    return text.split("## Perception\u2013distortion plane", 1)[1].split("\n## ", 1)[0]


# ----------------------------------------------------------------------------- the front and directions


def test_pareto_front_lower_is_better_on_both_axes() -> None:
    # Blau & Michaeli's own axes: distortion (RMSE) and perceptual index, both lower-is-better.
    points = [(1.0, 5.0), (2.0, 3.0), (3.0, 4.0), (4.0, 1.0), (2.0, 6.0), (4.0, 1.0), (5.0, 1.0)]
    front = pareto_front(points, x_higher=False, y_higher=False)
    # (3, 4) is beaten by (2, 3), (2, 6) by (1, 5), (5, 1) by (4, 1); equal points are both kept.
    assert front == [0, 1, 3, 5]


def test_pareto_front_higher_x_lower_y() -> None:
    # PSNR (higher is better) against FID (lower is better).
    points = [(20.0, 10.0), (22.0, 12.0), (24.0, 30.0), (21.0, 15.0), (24.0, 40.0)]
    assert pareto_front(points, x_higher=True, y_higher=False) == [0, 1, 2]
    # The other two combinations are the same problem with an axis mirrored.
    mirrored = [(-px, py) for px, py in points]
    assert sorted(pareto_front(mirrored, x_higher=False, y_higher=False)) == [0, 1, 2]
    assert pareto_front(points, x_higher=True, y_higher=True) == [4]
    assert pareto_front(points, x_higher=False, y_higher=True) == [0, 3, 4]
    assert pareto_front([], x_higher=True, y_higher=False) == []


def test_direction_from_the_metric_name_and_the_override() -> None:
    for name in (
        "val/psnr_y",
        "val/ssim_y",
        "val/psnr_y_bicubic",
        "val/modes_recovered",
        "val/test_accuracy",
    ):
        assert higher_is_better(name), name
    for name in ("val/fid_digits", "val/fid", "val/lpips", "val/l1", "val/kl_modes", "val/kid"):
        assert not higher_is_better(name), name
    assert Tradeoff(x=PSNR, y=FID).directions == (True, False)
    assert Tradeoff(x="val/l1", y=FID, y_higher_is_better=True).directions == (False, True)


# ----------------------------------------------------------------------------- the report


def test_report_draws_the_plane_with_front_baseline_and_skipped_runs(tmp_path: Path) -> None:
    page = _report(tmp_path)
    out = tmp_path / "out"
    with Image.open(out / TRADEOFF_FIGURE) as image:
        assert image.format == "PNG" and image.width > 400 and image.height > 300
    section = _section(page.read_text())
    assert f"![perception-distortion plane]({TRADEOFF_FIGURE})" in section
    assert "higher `val/psnr_y` and lower `val/fid_digits` are better" in section
    rows = {
        m.group(1): m.group(2).split(" | ")
        for m in re.finditer(r"^\| (\S+) \| (.*) \|$", section, flags=re.MULTILINE)
    }
    # run: swept values, x, y, label, on the front; 0.1 is beaten by 0.01 on both metrics.
    assert rows["0"] == ["adversarial_weight=0", "24", "30", "converged", "yes"]
    assert rows["1"][1:] == ["23.5", "20", "converged", "yes"]
    assert rows["2"][1:] == ["22", "12", "converged", "yes"]
    assert rows["3"][1:] == ["20", "15", "converged", "no"]
    # The baseline: the runs' mean of <metric>_bicubic.
    assert rows["bicubic"] == ["baseline", "21.1", "45", "", ""]
    assert "The star is the bicubic baseline" in section
    # A run without one of the metrics is listed, not an error.
    assert "**Skipped from the plot**: 2 run(s)" in section
    assert "- `4`: no val/fid_digits" in section
    assert "- `5`: no val/psnr_y, no val/fid_digits" in section
    page = (out / "index.html").read_text()
    assert "<h2>Perception\u2013distortion plane</h2>" in page and f'<img src="{TRADEOFF_FIGURE}"' in page


def test_points_are_the_final_values_and_the_baseline_needs_both_metrics(tmp_path: Path) -> None:
    runs = load_runs(sr_sweep(tmp_path / "sweep", bicubic=False))
    points = tradeoff_points(runs, PLANE)
    assert [r.name for r in points.runs] == ["0", "1", "2", "3"]
    assert list(zip(points.xs, points.ys, strict=True)) == list(RUNS.values())
    assert [points.runs[i].name for i in points.front] == ["2", "1", "0"]  # in increasing PSNR
    assert points.baseline is None
    # One bicubic metric alone is no baseline.
    runs[0].final[f"{PSNR}_bicubic"] = 21.0
    assert tradeoff_points(runs, PLANE).baseline is None
    runs[0].final[f"{FID}_bicubic"] = 40.0
    assert tradeoff_points(runs, PLANE).baseline == (21.0, 40.0)
    # A NaN final value (a diverged evaluation) is skipped, with the value.
    runs[1].final[FID] = math.nan
    skipped = {run.name: why for run, why in tradeoff_points(runs, PLANE).skipped}
    assert skipped["1"] == "val/fid_digits = nan"


def test_report_without_baseline_and_off_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[report.TradeoffPoints] = []
    monkeypatch.setattr(
        report.tradeoff, "plot_tradeoff", lambda points, *args, **kwargs: drawn.append(points)
    )
    section = _section(_report(tmp_path, bicubic=False).read_text())
    assert len(drawn) == 1 and drawn[0].baseline is None and "bicubic" not in section
    # Off (the default): no section, no figure.
    runs = load_runs(tmp_path / "sweep")
    page = write_report(runs, tmp_path / "off", x=None, y=None, metrics=[], curves=[])
    assert "Perception" not in page.read_text() and len(drawn) == 1
    assert not Tradeoff.from_mapping(cli._mapping(_compose("sweep_dir=x"), "tradeoff")).enabled


def test_unknown_metric_is_a_config_error_naming_the_logged_ones(tmp_path: Path) -> None:
    runs = load_runs(sr_sweep(tmp_path / "sweep"))
    with pytest.raises(ConfigError) as err:
        write_report(
            runs, tmp_path / "out", x=None, y=None, metrics=[], curves=[], tradeoff=Tradeoff(PSNR, "val/fidd")
        )
    assert str(err.value) == (
        "tradeoff.y='val/fidd' is not a metric of any run; metrics the runs logged: train/d_loss, "
        "train/g_loss, val/fid_digits, val/fid_digits_bicubic, val/psnr_y, val/psnr_y_bicubic, val/ssim_y"
    )
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- the command


def _compose(*overrides: str) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="compare", overrides=list(overrides))


def test_config_keys_parse_and_refuse_bad_values() -> None:
    assert Tradeoff.from_mapping(None) == Tradeoff()
    cfg = _compose(
        "sweep_dir=x", f"tradeoff.x={PSNR}", f"tradeoff.y={FID}", "tradeoff.y_higher_is_better=false"
    )
    assert Tradeoff.from_mapping(cli._mapping(cfg, "tradeoff")) == Tradeoff(PSNR, FID, None, False)
    assert not Tradeoff.from_mapping(
        cli._mapping(_compose("sweep_dir=x", "tradeoff=null"), "tradeoff")
    ).enabled
    with pytest.raises(ConfigError, match=r"needs both tradeoff\.x .* and tradeoff\.y"):
        Tradeoff.from_mapping({"x": PSNR, "y": None})
    with pytest.raises(ConfigError, match=r"unknown tradeoff key\(s\) \['z'\]; valid keys: \['x', 'y', "):
        Tradeoff.from_mapping({"x": PSNR, "y": FID, "z": 1})
    with pytest.raises(ConfigError, match=r"tradeoff\.x must be a metric name .* got 'psnr'"):
        Tradeoff.from_mapping({"x": "psnr", "y": FID})
    with pytest.raises(ConfigError, match=r"tradeoff\.x_higher_is_better must be true, false or null"):
        Tradeoff.from_mapping({"x": PSNR, "y": FID, "x_higher_is_better": "up"})


def test_main_refuses_an_unknown_tradeoff_metric_in_one_line_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    sweep = sr_sweep(tmp_path / "sweep")
    argv = [f"sweep_dir={sweep}", f"out={tmp_path / 'out'}", "x=null", "y=null", "final_metrics=[]"]
    argv += ["tradeoff.x=val/psnr", f"tradeoff.y={FID}", "hydra/job_logging=none", "hydra/hydra_logging=none"]
    monkeypatch.setattr(sys, "argv", ["gan-compare", *argv])
    GlobalHydra.instance().clear()
    try:
        with pytest.raises(SystemExit) as exited:
            cli.main()
    finally:
        GlobalHydra.instance().clear()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        "error: tradeoff.x='val/psnr' is not a metric of any run; "
    )
    assert "metrics the runs logged: train/d_loss, " in err and "val/psnr_y, val/psnr_y_bicubic" in err
    assert not (tmp_path / "out").exists()
