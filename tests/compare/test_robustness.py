"""gan-compare on damaged or unusual sweeps; its refusals: one ``error:`` line, exit 2, nothing written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gan_research.compare import cli, report
from gan_research.compare.runs import load_runs, param
from gan_research.errors import ConfigError
from tests.compare.conftest import run_config, smooth_losses, status_line, training_lines, write_run


def _tree(root: Path) -> dict[str, float | None]:
    """Every path under ``root`` with its modification time (None for folders)."""
    return {str(p.relative_to(root)): (None if p.is_dir() else p.stat().st_mtime_ns) for p in root.rglob("*")}


def _main(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    out, err = capsys.readouterr()
    return exited.value.code, out, err


def _default_group_sweep(root: Path) -> Path:
    """Two runs that differ in the model group, chosen on the command line in one run only.

    The other run's ``model`` is its whole config node: naming a file after it used to fail
    with ``OSError: File name too long`` halfway through the report.
    """
    d, g = smooth_losses()
    lines = [*training_lines(d, g, {}), status_line()]
    for name, seed, overrides, model in (
        ("a", 0, ["model=dcgan", "seed=0"], "dcgan"),
        ("b", 1, ["seed=1"], "mlp"),
    ):
        config = run_config(1e-4, 1e-4, seed, "hinge")
        config["model"] = {"_target_": f"gan_research.models.{model}", "generator": {"doc": "x" * 400}}
        run = write_run(root / name, overrides=overrides, config=config, lines=lines, samples=[100])
        hydra_yaml = run / ".hydra" / "hydra.yaml"
        hydra_yaml.write_text(hydra_yaml.read_text().replace("model: mlp", f"model: {model}"))
    return root


REFUSALS = [
    # (arguments, with {sweep}/{tmp} filled in; a fragment of the one error line)
    ([], "sweep_dir is required"),
    (["sweep_dir={tmp}/absent"], "does not exist; pass a gan-train -m sweep directory"),
    (["sweep_dir={tmp}/a_file"], "is a file, not a directory"),
    (["sweep_dir={tmp}/empty"], "holds no run directories"),
    (
        ["sweep_dir={sweep}", "x=schedule.lr_gg"],
        "x='schedule.lr_gg' is not a key of any run's overrides or config",
    ),
    (
        ["sweep_dir={sweep}", "y=schedule.lr_dd"],
        "swept keys: ['schedule.lr_g', 'schedule.lr_d', 'loss', 'seed']",
    ),
    (["sweep_dir={sweep}", "x=null"], "y='schedule.lr_d' needs an x key too"),
    (["sweep_dir={sweep}", "x=schedule.lr_d"], "x and y are both 'schedule.lr_d'"),
    (["sweep_dir={sweep}", "final_metrics=[modes_recovered]"], "'modes_recovered' is not a metric name"),
    (["sweep_dir={sweep}", "curves=train_loss"], "metrics the runs logged: train/d_loss, train/g_loss, val/"),
    (["sweep_dir={sweep}", "smooth=abc"], "smooth must be an integer >= 1"),
    (["sweep_dir={sweep}", "rules.window=2"], "rules.window must be in (0, 1]"),
    (
        ["sweep_dir={sweep}", "rules.windw=1"],
        "unknown key 'rules.windw' (in 'rules.windw=1'); valid keys of rules:",
    ),
    (["sweep_dir={sweep}", "source=s3"], "source='s3' is invalid; valid sources: ['local', 'wandb']"),
    (
        ["sweep_dir={sweep}", "model=mlp"],
        "gan-compare has no option 'model' (in 'model=mlp'); its options: source,",
    ),
    (["sweep_dir={sweep}", "metrics=[val/fid]"], "the final metrics of the report are final_metrics=[...]"),
    (["sweep_dir={sweep}", "x=["], "cannot parse the override 'x=['"),
    (["sweep_dir={sweep}", "out={tmp}/a_file"], "is a file; pass out=<a folder>"),
    (["-m", "sweep_dir={sweep}"], "one report per command"),
]


@pytest.mark.parametrize(("args", "expected"), REFUSALS, ids=[" ".join(a) or "no-args" for a, _ in REFUSALS])
def test_a_refusal_is_one_error_line_exit_2_and_writes_nothing(
    args: list[str],
    expected: str,
    sweep: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    (tmp_path / "a_file").write_text("not a sweep\n")
    (tmp_path / "empty").mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    before = _tree(tmp_path)
    code, out, err = _main([a.format(sweep=sweep, tmp=tmp_path) for a in args], capsys)
    assert code == 2
    assert out == ""
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert expected in err
    assert _tree(tmp_path) == before  # no report, no .hydra/, no log file, no outputs/


def test_runs_differing_in_a_default_group_are_named_by_their_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    sweep = _default_group_sweep(tmp_path / "sweep")
    runs = load_runs(sweep)
    assert [param(run, "model") for run in runs] == ["dcgan", "mlp"]  # Hydra's choice, not the node
    monkeypatch.chdir(tmp_path)
    cli.main([f"sweep_dir={sweep}", "x=null", "y=null", "final_metrics=[]"])
    assert capsys.readouterr().out.strip() == str(sweep / "report" / "report.md")
    names = sorted(p.name for p in (sweep / "report").iterdir())
    assert "samples_model=dcgan.png" in names and "samples_model=mlp.png" in names
    # Written in a staging folder and renamed: the report folder still has the umask's mode.
    umask = os.umask(0)
    os.umask(umask)
    assert (sweep / "report").stat().st_mode & 0o777 == 0o777 & ~umask


def test_file_names_are_bounded_sanitised_and_distinct() -> None:
    names = report.page._FileNames()
    long = names.name("samples", "tags=" + "a/b " * 200)
    assert len(long) <= report.page._MAX_NAME + 4 and long.endswith(".png") and "/" not in long
    assert names.name("samples", "tags=" + "a/b " * 200) == long  # stable for the same text
    assert names.name("curves", "val/fid") == "curves_val_fid.png"
    # Two texts that sanitise alike keep separate files.
    assert names.name("curves", "val fid") not in ("curves_val_fid.png", long)


def test_a_failure_midway_leaves_no_half_report(
    sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise OSError(36, "File name too long")

    monkeypatch.setattr(report.page, "plot_samples", broken)
    out = tmp_path / "new" / "deeper" / "report"
    with pytest.raises(OSError, match="File name too long"):
        report.write_report(load_runs(sweep), out, x="schedule.lr_g", y=None, metrics=[], curves=[])
    assert not (tmp_path / "new").exists()  # nor the parents made for it
    # An earlier report is left as it was, and no temporary folder stays beside it.
    old = tmp_path / "old"
    old.mkdir()
    (old / "report.md").write_text("earlier\n")
    with pytest.raises(OSError):
        report.write_report(load_runs(sweep), old, x="schedule.lr_g", y=None, metrics=[], curves=[])
    assert sorted(os.listdir(tmp_path)) == ["old", "sweep"]
    assert os.listdir(old) == ["report.md"] and (old / "report.md").read_text() == "earlier\n"


def test_unreadable_lines_and_unlogged_metrics_are_reported(sweep: Path, tmp_path: Path) -> None:
    # Damage a finished run in the middle too: its label stands on the remaining lines, and says so.
    metrics = sweep / "0" / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    metrics.write_text("\n".join([*lines[:3], '{"step": 3', "\x00\x00", *lines[3:]]) + "\n")
    warnings: list[str] = []
    cfg = cli._compose([f"sweep_dir={sweep}", f"out={tmp_path / 'r'}", "final_metrics=[val/nope]"])
    page = cli.compare(cfg, warn=warnings.append).read_text()
    assert warnings == [
        "final_metrics: no run logged 'val/nope'; metrics the runs logged: train/d_loss, train/g_loss, "
        "val/high_quality, val/modes_recovered",
        "run 0: skipped unreadable lines 4, 5 of metrics.jsonl (cut off when the run was killed, or "
        "corrupt); judged on the rest",
        "run 9: skipped unreadable line 13 of metrics.jsonl (cut off when the run was killed, or corrupt); "
        "judged on the rest",
    ]
    assert "**Unreadable metrics.jsonl lines** in 2 run(s)" in page
    assert "- `0`: lines 4, 5" in page and "- `9`: line 13" in page
    with (tmp_path / "r" / "runs.csv").open() as f:
        header, first = f.readline(), f.readline()
    assert "skipped_lines" in header and first.split(",")[header.split(",").index("skipped_lines")] == "2"


def test_cli_prints_warnings_on_stderr_and_the_report_on_stdout(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cli.main([f"sweep_dir={sweep}", f"out={tmp_path / 'r'}", "x=null", "y=null", "final_metrics=[]"])
    out, err = capsys.readouterr()
    assert out == f"{tmp_path / 'r' / 'report.md'}\n"
    assert err == (
        "warning: run 9: skipped unreadable line 13 of metrics.jsonl (cut off when the run was killed, "
        "or corrupt); judged on the rest\n"
    )


def test_help_lists_gan_compare_options_only(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = _main(["--help"], capsys)
    assert code == 0
    assert out.startswith("gan-compare: the comparison report of a sweep's runs")
    assert "sweep_dir: ???" in out and "final_metrics:" in out
    assert "Configuration groups" not in out and "stylegan2" not in out


def test_refusing_an_unwritable_out(sweep: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        with pytest.raises(ConfigError, match=r"out=.*locked/r cannot be written \(Permission denied\)"):
            report.write_report(load_runs(sweep), locked / "r", x=None, y=None, metrics=[], curves=[])
    finally:
        locked.chmod(0o700)
