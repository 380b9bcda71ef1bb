"""``gan-compare`` end to end: the console script in one subprocess, the rest in process."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from gan_research.compare import cli
from gan_research.config import CONFIG_DIR
from gan_research.errors import ConfigError
from tests.compare.test_runs import fake_api


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # The installed console script (what a user runs); `python -m` where it is not installed.
    script = Path(sys.executable).with_name("gan-compare")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "gan_research.compare.cli"]
    return subprocess.run([*command, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def _compose(*overrides: str) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="compare", overrides=list(overrides))


def test_cli_writes_the_report_into_the_sweep_and_nothing_else(sweep: Path, tmp_path: Path) -> None:
    # The module's one subprocess: the console script, with Hydra's real logging configuration.
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    before = sorted(p.relative_to(sweep) for p in sweep.rglob("*"))
    proc = _cli(f"sweep_dir={sweep}", "final_metrics=[val/modes_recovered]", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    report = sweep / "report" / "report.md"
    assert proc.stdout.strip().splitlines()[-1] == str(report)
    assert "![stability](heatmap_stability.png)" in report.read_text()
    with (sweep / "report" / "runs.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["name"], r["label"], r["val/modes_recovered"]) for r in rows[1:4]] == [
        ("1", "converged", "6.0"),
        ("2", "collapsed", "2.0"),
        ("3", "collapsed", "2.0"),
    ]
    # Hydra left no .hydra/, log file or outputs/ anywhere; the sweep only gained report/.
    assert list(cwd.iterdir()) == []
    after = sorted(p.relative_to(sweep) for p in sweep.rglob("*") if "report" not in p.parts)
    assert after == before


def test_main_refuses_an_unknown_x_key_in_one_line(
    sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    # In process (the subprocess above already proves the entry point); Hydra's logging stays off
    # so no handler outlives this test's captured stdout.
    argv = [f"sweep_dir={sweep}", f"out={tmp_path / 'out'}", "x=schedule.lr_gg"]
    argv += ["hydra/job_logging=none", "hydra/hydra_logging=none"]
    monkeypatch.setattr(sys, "argv", ["gan-compare", *argv])
    GlobalHydra.instance().clear()
    try:
        with pytest.raises(SystemExit) as exited:
            cli.main()
    finally:
        GlobalHydra.instance().clear()
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "error: x='schedule.lr_gg' is not a key of any run's overrides or config; "
        "swept keys: ['schedule.lr_g', 'schedule.lr_d', 'loss', 'seed']\n"
    )
    assert not (tmp_path / "out").exists()


def test_compare_in_process_with_out_and_overridden_rules(sweep: Path, tmp_path: Path) -> None:
    cfg = _compose(
        f"sweep_dir={sweep}",
        f"out={tmp_path / 'o'}",
        "y=null",
        "final_metrics=val/high_quality",
        "rules.window=1",
    )
    report = cli.compare(cfg)
    assert report == tmp_path / "o" / "report.md"
    assert (tmp_path / "o" / "heatmap_val_high_quality.png").is_file()
    assert "last 100% of the curve" in report.read_text()


def test_missing_sweep_dir_and_bad_source_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="sweep_dir is required: gan-compare sweep_dir="):
        cli.compare(_compose())
    with pytest.raises(ConfigError, match=r"source='s3' is invalid; valid sources: \['local', 'wandb'\]"):
        cli.compare(_compose("source=s3"))
    with pytest.raises(ConfigError, match=r"source=wandb needs wandb\.path"):
        cli.compare(_compose("source=wandb"))
    with pytest.raises(ConfigError, match=r"unknown rules key\(s\) \['windw'\]"):
        cli.compare(_compose("sweep_dir=x", "+rules.windw=1"))


def test_wandb_source_with_a_fake_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    api = fake_api()
    real = cli.load_wandb_runs
    monkeypatch.setattr(cli, "load_wandb_runs", lambda path, group, samples: real(path, group, api, samples))
    cfg = _compose("source=wandb", "wandb.path=ent/proj", "wandb.group=sweep/1", f"out={tmp_path / 'w'}")
    report = cli.compare(cfg)
    assert api.calls == [("ent/proj", {"group": "sweep/1"})]
    text = report.read_text()
    assert "# gan-compare: wandb:ent/proj group sweep/1" in text
    with (tmp_path / "w" / "runs.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["name"], r["schedule.lr_g"], r["status"], r["label"]) for r in rows] == [
        ("mlp_hinge_ring8-a1", "0.0001", "finished", "converged"),
        ("mlp_hinge_ring8-b2", "0.001", "failed", "diverged"),  # crashed with a NaN loss
    ]
    # Without out, the report goes to reports/<group> under the working directory.
    monkeypatch.chdir(tmp_path)
    cfg = _compose("source=wandb", "wandb.path=ent/proj", "wandb.group=sweep/1")
    assert cli.compare(cfg) == Path("reports") / "sweep_1" / "report.md"
