"""Published reference rows, group_by over seeds and the "beats" flag of gan-compare's comparison table."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from gan_research.compare import cli
from gan_research.compare.references import load_references
from gan_research.compare.report import (
    beats,
    better,
    comparison_table,
    format_stat,
    format_value,
    metric_stat,
)
from gan_research.compare.report.comparison import Stat
from gan_research.compare.runs import RunRecord, load_runs
from gan_research.errors import ConfigError
from tests.compare.conftest import smooth_losses, status_line, training_lines, write_run
from tests.compare.test_robustness import _main, _tree

MODES, HQ, KL = "val/modes_recovered", "val/high_quality", "val/kl_uniform"
# (dataset, remedy) -> one (modes, high_quality %, kl) per seed: hand numbers with known mean ± std.
GROUPS = {
    ("ring8", "none"): [(6, 90.0, 0.5), (8, 94.0, 0.3)],
    ("ring8", "pacgan"): [(8, 97.0, 0.05), (8, 98.0, 0.07), (8, 99.0, 0.09)],
}
REFERENCES = [
    # pacgan beats it on all three; none is below it on modes (7 < 7.5).
    {
        "name": "GAN (PacGAN Table 1)",
        "source": "Lin et al. 2018, Table 1",
        "where": {"dataset": "ring8"},
        "metrics": {MODES: 7.5, HQ: 95.0, KL: 0.1},
    },
    # Lower KL is better: pacgan's 0.07 is worse than 0.06, although its modes are better.
    {"name": "KL only", "metrics": {MODES: 7.9, KL: 0.06}},
    {"name": "grid", "where": {"dataset": "grid25"}, "metrics": {MODES: 1.0}},
]


def sweep_of_groups(root: Path) -> Path:
    job = 0
    d, g = smooth_losses(10)
    for (dataset, remedy), seeds in GROUPS.items():
        for seed, (modes, hq, kl) in enumerate(seeds):
            final = {MODES: float(modes), HQ: hq, KL: kl}
            write_run(
                root / str(job),
                overrides=[f"dataset={dataset}", f"remedy={remedy}", f"seed={seed}"],
                config={"seed": seed, "dataset": {"num_modes": 8}, "schedule": {"lr_g": 1e-4}},
                lines=[*training_lines(d, g, {500: final, 1000: final}), status_line(step=1000, **final)],
            )
            job += 1
    return root


def write_refs(path: Path, rows: Any) -> Path:
    path.write_text(rows if isinstance(rows, str) else yaml.safe_dump(rows, sort_keys=False))
    return path


def record(name: str, **final: float) -> RunRecord:
    return RunRecord(path=Path(name), name=name, config={"dataset": {"num_modes": 8}}, final=dict(final))


# ----------------------------------------------------------------------------- numbers


def test_mean_and_sample_std_over_seeds_on_hand_numbers() -> None:
    runs = [record("a", **{MODES: 6.0, KL: 0.5}), record("b", **{MODES: 8.0, KL: math.nan}), record("c")]
    stat = metric_stat(runs, MODES)
    assert (stat.mean, stat.n) == (7.0, 2) and stat.std == pytest.approx(math.sqrt(2))
    assert format_stat(MODES, stat, 3) == "7.0 ± 1.4 (2/3 runs)"
    one = metric_stat(runs, KL)
    assert (one.mean, one.n) == (0.5, 1) and math.isnan(one.std)
    assert format_stat(KL, one, 1) == "0.500"
    assert format_stat(HQ, metric_stat(runs, HQ), 3) == "n/a"


def test_numbers_are_formatted_by_metric() -> None:
    assert format_value(MODES, 6.25) == "6.2"
    assert format_value(HQ, 98.23) == "98.2%"  # logged in percent already
    assert format_value("val/coverage", 0.8123) == "81.2%"  # a fraction, shown as percent
    assert format_value(KL, 0.45) == "0.450"
    assert format_value("val/fid_digits", 12.3456) == "12.35"
    assert format_stat(HQ, Stat(92.0, 2.828, 2), 2) == "92.0 ± 2.8%"


def test_beats_needs_better_on_every_shared_metric() -> None:
    assert better(MODES, 8.0, 7.5) and not better(MODES, 7.0, 7.5)
    assert better(KL, 0.07, 0.1) and not better(KL, 0.07, 0.06)  # lower is better for KL
    stats = {MODES: Stat(8.0, 0.0, 3), HQ: Stat(98.0, 1.0, 3), KL: Stat(0.07, 0.02, 3)}
    assert beats(stats, {MODES: 7.5, HQ: 95.0, KL: 0.1})
    assert not beats(stats, {MODES: 7.9, KL: 0.06})  # worse on one
    assert not beats(stats, {MODES: 8.0})  # a tie is not better
    assert beats(stats, {MODES: 7.0, "val/fid": 10.0})  # only shared metrics count
    assert not beats(stats, {"val/fid": 10.0})  # nothing shared: nothing to beat
    assert not beats({MODES: Stat(math.nan, math.nan, 0)}, {MODES: 1.0})


def test_group_by_gives_one_row_per_group_with_all_modes_and_beats(tmp_path: Path) -> None:
    runs = load_runs(sweep_of_groups(tmp_path / "sweep"))
    refs = load_references(write_refs(tmp_path / "refs.yaml", REFERENCES))
    labels = {run.name: ("converged", "") for run in runs}
    table = comparison_table(
        runs, labels, metrics=[MODES, HQ], group_by=["dataset", "remedy"], references=refs, varying=[]
    )
    assert table.metrics == [MODES, HQ, KL]  # final_metrics, then the references' others
    none, pacgan = table.measured
    assert (none.title, none.keys, len(none.runs)) == (
        "dataset=ring8, remedy=none",
        {"dataset": "ring8", "remedy": "none"},
        2,
    )
    assert none.stats[MODES].mean == 7.0 and none.stats[MODES].std == pytest.approx(math.sqrt(2))
    assert none.stats[HQ].mean == 92.0 and none.stats[KL].mean == pytest.approx(0.4)
    assert pacgan.stats[HQ].mean == 98.0 and pacgan.stats[HQ].std == pytest.approx(1.0)
    assert pacgan.stats[KL].std == pytest.approx(0.02)
    assert (none.all_modes, pacgan.all_modes) == (1, 3)
    # grid25 applies to neither; the others to both.
    assert none.applicable == pacgan.applicable == ["GAN (PacGAN Table 1)", "KL only"]
    assert none.beats == [] and pacgan.beats == ["GAN (PacGAN Table 1)"]
    # Without group_by: one row per run, its own values (today's granularity).
    per_run = comparison_table(
        runs, labels, metrics=[MODES], group_by=None, references=refs, varying=["seed"]
    )
    assert [row.title for row in per_run.measured][:2] == ["0 (seed=0)", "1 (seed=1)"]
    # pacgan's seed 0 alone (KL 0.05 < 0.06) beats "KL only"; its group's mean (0.07) does not.
    assert [row.beats for row in per_run.measured] == [
        [],
        [],
        ["GAN (PacGAN Table 1)", "KL only"],
        ["GAN (PacGAN Table 1)"],
        ["GAN (PacGAN Table 1)"],
    ]


# ----------------------------------------------------------------------------- end to end


def test_cli_writes_the_comparison_table_beside_runs_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    sweep = sweep_of_groups(tmp_path / "sweep")
    refs = write_refs(tmp_path / "refs.yaml", REFERENCES)
    out = tmp_path / "report"
    cli.main(
        [
            f"sweep_dir={sweep}",
            f"out={out}",
            f"references={refs}",
            "group_by=[dataset,remedy]",
            "x=null",
            "y=null",
            "curves=[]",
            f"final_metrics=[{MODES},{HQ},{KL}]",
        ]
    )
    assert capsys.readouterr().out == f"{out / 'report.md'}\n"
    with (out / "table.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["kind"], r["name"], r["n"], r["beats"]) for r in rows] == [
        ("published", "GAN (PacGAN Table 1)", "", ""),
        ("published", "KL only", "", ""),
        ("published", "grid", "", ""),
        ("measured", "dataset=ring8, remedy=none", "2", ""),
        ("measured", "dataset=ring8, remedy=pacgan", "3", "GAN (PacGAN Table 1)"),
    ]
    assert rows[0]["dataset"] == "ring8" and rows[0][MODES] == "7.5" and rows[0]["where"] == "dataset=ring8"
    assert (rows[3][MODES], rows[3][f"{MODES}_n"], rows[3]["all_modes"]) == ("7.0", "2", "1")
    assert float(rows[3][f"{MODES}_std"]) == pytest.approx(math.sqrt(2))
    records = json.loads((out / "table.json").read_text())
    assert records[4]["beats"] == ["GAN (PacGAN Table 1)"] and records[4]["runs"] == ["2", "3", "4"]
    assert records[4]["metrics"][HQ] == {"mean": 98.0, "std": 1.0, "n": 3}
    md = (out / "report.md").read_text()
    assert "## Comparison with published results" in md
    assert (
        "| published | GAN (PacGAN Table 1) | Lin et al. 2018, Table 1; for dataset=ring8 |  | 7.5 | 95.0% "
        "| 0.100 |  |  |  |"
    ) in md
    assert (
        "| measured | dataset=ring8, remedy=none | this sweep | 2 | 7.0 ± 1.4 | 92.0 ± 2.8% | 0.400 ± 0.141 "
        "| all modes in 1/2 runs | 2 converged | none |"
    ) in md
    assert (
        "| 8.0 ± 0.0 | 98.0 ± 1.0% | 0.070 ± 0.020 | all modes in 3/3 runs | 3 converged "
        "| GAN (PacGAN Table 1) |" in md
    )
    assert "lower for `val/kl_uniform`" in md and "`val/high_quality` is in percent" in md
    page = (out / "index.html").read_text()
    assert "<td>all modes in 3/3 runs</td>" in page and "<h2>Comparison with published results</h2>" in page


def test_group_by_without_references_and_an_undertrained_run(tmp_path: Path) -> None:
    sweep = sweep_of_groups(tmp_path / "sweep")
    # Job 0 still climbing: 2 -> 4 -> 6 modes over its last evaluations.
    metrics = sweep / "0" / "metrics.jsonl"
    d, g = smooth_losses(10)
    evals = {300: {MODES: 2.0}, 600: {MODES: 4.0}, 900: {MODES: 6.0}}
    lines = [*training_lines(d, g, evals), status_line(step=1000, **{MODES: 6.0, HQ: 90.0, KL: 0.5})]
    metrics.write_text("".join(json.dumps(line) + "\n" for line in lines))
    cfg = cli._compose([f"sweep_dir={sweep}", f"out={tmp_path / 'r'}", "group_by=remedy", "x=seed", "y=null"])
    cfg.curves = []
    md = cli.compare(cfg, warn=lambda line: None).read_text()
    assert "## Results by group" in md and "| n |" in md and "beats" not in md
    assert "| measured | remedy=none | this sweep | 2 | 7.0 ± 1.4 | 92.0 ± 2.8% | 0.400 ± 0.141 |" in md
    assert "| all modes in 1/2 runs | 1 converged, 1 undertrained |" in md
    assert (tmp_path / "r" / "heatmap_stability.png").is_file()  # its cells count "1 under"
    assert (tmp_path / "r" / "table.csv").is_file()


def test_without_group_by_or_references_there_is_no_table(tmp_path: Path) -> None:
    sweep = sweep_of_groups(tmp_path / "sweep")
    cfg = cli._compose([f"sweep_dir={sweep}", f"out={tmp_path / 'r'}", "x=null", "y=null", "curves=[]"])
    cfg.final_metrics = []
    md = cli.compare(cfg, warn=lambda line: None).read_text()
    assert "Comparison" not in md and "Results by group" not in md
    assert not (tmp_path / "r" / "table.csv").exists()


def test_a_fraction_for_a_percentage_and_unlogged_metrics_are_warned(tmp_path: Path) -> None:
    sweep = sweep_of_groups(tmp_path / "sweep")
    refs = write_refs(tmp_path / "refs.yaml", [{"name": "A", "metrics": {HQ: 0.982, "val/fid": 3.0}}])
    warnings: list[str] = []
    cfg = cli._compose(
        [f"sweep_dir={sweep}", f"out={tmp_path / 'r'}", f"references={refs}", "x=null", "y=null"]
    )
    cfg.curves, cfg.final_metrics = [], []
    cli.compare(cfg, warn=warnings.append)
    assert warnings == [
        "references: no run logged 'val/fid'; those published values are shown but compared with nothing",
        f"references={refs}, row 1 ('A'): val/high_quality = 0.982 looks like a fraction, but the runs log "
        "val/high_quality in percent (0-100); write 98.2 if the paper says 98.2%",
    ]


# ----------------------------------------------------------------------------- refusals

GOOD = {"name": "A", "metrics": {MODES: 6.3}}
BAD_FILES = [
    # (file content: rows or raw text; a fragment of the message)
    (
        [GOOD, {**GOOD, "name": "B", "metric": {MODES: 1}}],
        "row 2 ('B'): unknown key(s) ['metric']; valid keys: name, source, where, metrics",
    ),
    (
        [{"name": "A", "metrics": {MODES: "six"}}],
        "row 1 ('A'): metrics.val/modes_recovered must be a finite number, got 'six'",
    ),
    (
        [{"name": "A", "metrics": {MODES: True}}],
        "metrics.val/modes_recovered must be a finite number, got True",
    ),
    ([{"name": "A", "metrics": {MODES: float("nan")}}], "must be a finite number, got nan"),
    ([{"metrics": {MODES: 6.3}}], "row 1: missing key 'name'; each row needs name and metrics"),
    ([GOOD, {"name": "B"}], "row 2 ('B'): missing key 'metrics'"),
    ([{"name": "A", "metrics": {}}], "row 1 ('A'): metrics must be a non-empty mapping of metric names"),
    ([{"name": "A", "metrics": {"modes_recovered": 6.3}}], "metrics.modes_recovered is not a metric name"),
    ([{"name": "A", "metrics": {HQ: 120}}], "metrics.val/high_quality = 120 is outside 0-100"),
    (
        [{"name": "A", "where": ["ring8"], "metrics": {MODES: 1}}],
        "row 1 ('A'): where must be a mapping of config keys",
    ),
    (
        [{"name": "A", "where": {"dataset": [1, 2]}, "metrics": {MODES: 1}}],
        "where.dataset must be a single value",
    ),
    ([{"name": "A", "source": 2018, "metrics": {MODES: 1}}], "row 1 ('A'): source must be a text"),
    ([{"name": "", "metrics": {MODES: 1}}], "row 1: name must be a non-empty text, got ''"),
    ([GOOD, GOOD], "row 2: name 'A' is also row 1's"),
    (["just a string"], "row 1: a row must be a mapping with keys name, source, where, metrics"),
    (GOOD, "must hold a list of rows (each starting with '- name: ...'), got a dict"),
    ("", "holds no rows"),
    ("[]", "holds no rows"),
    (
        "- name: A\n  metrics: {val/x: 1\n",
        "not valid YAML (expected ',' or '}', but got '<stream end>' at line 3",
    ),
    (
        '- !!python/object/apply:os.system ["touch pwned"]\n',
        "holds a YAML tag, which is refused, never run (could not determine a constructor for the tag",
    ),
]


@pytest.mark.parametrize(("content", "expected"), BAD_FILES, ids=[e[:40] for _, e in BAD_FILES])
def test_a_malformed_references_file_is_one_config_error_naming_file_row_and_key(
    content: Any, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_refs(tmp_path / "refs.yaml", content)
    with pytest.raises(ConfigError) as err:
        load_references(path)
    message = str(err.value)
    assert message.startswith(f"references={path}") and expected in message, message
    assert not (tmp_path / "pwned").exists()  # safe_load: the tag is refused, never run


CLI_REFUSALS = [
    (["references={tmp}/absent.yaml"], "references={tmp}/absent.yaml does not exist; pass a YAML file"),
    (
        ["references={tmp}/refs.yaml"],
        "row 1 ('A'): metrics.val/kl_uniform must be a finite number, got 'low'",
    ),
    (
        ["references={tmp}/where.yaml"],
        "row 1 ('W'): where key 'datasett' is not a key of any run's overrides",
    ),
    (
        ["group_by=[remedyy]"],
        "group_by='remedyy' is not a key of any run's overrides or config; swept keys: ",
    ),
    (["group_by={{a: 1}}"], "group_by must be a list of config keys"),
    (["rules.rising_window=2"], "rules.rising_window must be an integer >= 3, got 2"),
]


@pytest.mark.parametrize(("args", "expected"), CLI_REFUSALS, ids=[a[0] for a, _ in CLI_REFUSALS])
def test_cli_refusals_are_one_line_exit_2_and_write_nothing(
    args: list[str],
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    sweep = sweep_of_groups(tmp_path / "sweep")
    write_refs(tmp_path / "refs.yaml", [{"name": "A", "metrics": {MODES: 6.0, KL: "low"}}])
    write_refs(
        tmp_path / "where.yaml", [{"name": "W", "where": {"datasett": "ring8"}, "metrics": {MODES: 6.0}}]
    )
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    before = _tree(tmp_path)
    argv = [f"sweep_dir={sweep}", "x=null", "y=null", *(a.format(tmp=tmp_path) for a in args)]
    code, out, err = _main(argv, capsys)
    assert (code, out) == (2, "")
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert expected.format(tmp=tmp_path) in err
    assert _tree(tmp_path) == before
