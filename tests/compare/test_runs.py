"""Loading runs: local sweep directories (tolerating broken ones) and W&B groups through a fake API."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from gan_research.compare.runs import load_run, load_runs, load_wandb_runs, param, parse_overrides
from gan_research.errors import ConfigError
from tests.compare.conftest import run_config, status_line, write_run


def test_load_runs_finds_every_job_sorted_with_relative_names(sweep: Path) -> None:
    runs = load_runs(sweep)
    assert [r.name for r in runs] == [str(i) for i in range(10)]
    assert all(r.path.parent == sweep for r in runs)


def test_overrides_are_typed_and_finals_come_from_the_status_line(sweep: Path) -> None:
    run = load_runs(sweep)[2]  # lr_g=1e-3, hinge, seed 0, 2 modes
    assert run.overrides == {"schedule.lr_g": 0.001, "schedule.lr_d": 0.0001, "loss": "hinge", "seed": 0}
    assert run.status == "finished" and run.reason is None
    assert run.steps == 3000 and run.seconds == 61.2
    assert run.final["val/modes_recovered"] == 2.0
    assert run.final["val/high_quality"] == 0.8
    assert [s for s, _ in run.history["val/modes_recovered"]] == [1000, 2000, 3000]
    assert len(run.history["train/d_loss"]) == 30
    assert run.history["train/d_loss"][0][0] == 100
    assert run.last_sample == sweep / "2" / "samples" / "step_0003000.png"
    assert load_runs(sweep)[3].last_sample is None


def test_status_line_values_win_and_nan_strings_are_floats(tmp_path: Path) -> None:
    lines = [
        {"step": 100, "time": 10.0, "train/d_loss": 0.5, "train/g_loss": "nan", "epoch": 0},
        {"step": 200, "time": 30.0, "train/d_loss": "inf", "train/g_loss": 1.0},
        status_line("diverged", step=200, reason="train/d_loss is inf", **{"train/d_loss": 0.25}),
    ]
    run = load_run(write_run(tmp_path / "r", overrides=[], lines=lines))
    assert math.isnan(run.history["train/g_loss"][0][1])
    assert run.history["train/d_loss"] == [(100, 0.5), (200, math.inf)]
    assert run.final["train/d_loss"] == 0.25  # the status line's
    assert run.final["train/g_loss"] == 1.0
    assert "epoch" not in run.history  # metrics are the hierarchical keys
    assert (run.status, run.reason, run.steps) == ("diverged", "train/d_loss is inf", 200)


def test_killed_and_failed_runs_are_listed_with_what_is_known(sweep: Path) -> None:
    runs = {r.name: r for r in load_runs(sweep)}
    failed, killed = runs["8"], runs["9"]
    assert (failed.status, failed.reason) == ("failed", "ConfigError: bad things")
    assert failed.history == {} and failed.final == {} and failed.last_sample is None
    # The truncated last line is skipped; no status line means running (or killed).
    assert killed.status == "running" and killed.reason is None
    assert killed.steps == 1200 and killed.seconds == pytest.approx(11.0)
    assert len(killed.history["train/g_loss"]) == 12


def test_a_run_without_any_file_but_its_config(tmp_path: Path) -> None:
    write_run(tmp_path / "sweep" / "0")
    (run,) = load_runs(tmp_path / "sweep")
    assert (run.status, run.steps, run.seconds, run.overrides, run.history) == ("running", None, None, {}, {})


def test_a_resumed_run_is_judged_by_its_last_line(tmp_path: Path) -> None:
    lines = [
        {"step": 100, "time": 1.0, "train/d_loss": 0.5},
        status_line("interrupted", step=100, **{"train/d_loss": 0.5}),
        {"step": 200, "time": 2.0, "train/d_loss": 0.4},
    ]
    run = load_run(write_run(tmp_path / "r", lines=lines))
    assert run.status == "running"
    assert run.final["train/d_loss"] == 0.4  # logged after the old status line


def test_run_dirs_are_found_two_levels_down_but_not_deeper(tmp_path: Path) -> None:
    write_run(tmp_path / "sweep" / "a" / "0")
    write_run(tmp_path / "sweep" / "b")
    write_run(tmp_path / "sweep" / "c" / "d" / "too_deep")
    assert [r.name for r in load_runs(tmp_path / "sweep")] == ["a/0", "b"]
    # A single run directory is a sweep of one.
    assert [r.name for r in load_runs(tmp_path / "sweep" / "b")] == ["b"]


def test_missing_or_empty_sweep_dir_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nowhere"):
        load_runs(tmp_path / "nowhere")
    (tmp_path / "empty" / "x").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"empty holds no run directories"):
        load_runs(tmp_path / "empty")


def test_param_falls_back_to_the_config(sweep: Path) -> None:
    run = load_runs(sweep)[5]  # lr_g=1e-4, wgan_gp, seed 1
    assert param(run, "schedule.lr_g") == 0.0001  # override
    assert param(run, "schedule.beta1") == 0.5  # config only
    assert param(run, "loss") == "wgan_gp"  # the group choice, not the config node
    assert param(run, "loss._target_") == "gan_research.losses.wgan_gp"
    assert param(run, "dataset.seed") == 1  # ${seed} resolved
    # ${hydra:...} is pinned to the run's own hydra.yaml, not to the reading app's.
    assert param(run, "name") == "mlp_hinge_ring8"
    assert param(run, "paths.output_dir") == str(sweep / "5")
    assert param(run, "schedule.nope", "default") == "default"


def test_parse_overrides_types_values_like_hydra() -> None:
    parsed = parse_overrides(["schedule.lr_g=1e-3", "+x.y=2", "loss=wgan_gp", "~z", "name='a b'", "t=null"])
    assert parsed == {"schedule.lr_g": 0.001, "x.y": 2, "loss": "wgan_gp", "name": "a b", "t": None}


class FakeRun:
    """The attributes of wandb.apis.public.Run that load_wandb_runs reads."""

    def __init__(
        self, id: str, config: dict, summary: dict, state: str, rows: list[dict], group: str
    ) -> None:
        self.id, self.name, self.config, self.summary = id, "mlp_hinge_ring8", config, summary
        self.state, self.rows, self.group = state, rows, group
        self.history_calls: list[dict[str, Any]] = []

    def history(self, samples: int = 500, keys: Any = None, pandas: bool = True, **kwargs: Any) -> list[dict]:
        self.history_calls.append({"samples": samples, "pandas": pandas})
        return self.rows

    def scan_history(self, **kwargs: Any) -> list[dict]:
        self.history_calls.append({"scan": True})
        return self.rows


class FakeApi:
    def __init__(self, runs: list[FakeRun]) -> None:
        self._runs = runs
        self.calls: list[tuple[str, Any]] = []

    def runs(self, path: str, filters: dict | None = None, **kwargs: Any) -> list[FakeRun]:
        self.calls.append((path, filters))
        return [r for r in self._runs if not filters or r.group == filters["group"]]


def fake_api() -> FakeApi:
    def rows(g: list[float]) -> list[dict]:
        return [
            {"_step": i, "trainer/global_step": 100 * (i + 1), "train/g_loss": v, "epoch": 0}
            for i, v in enumerate(g)
        ]

    return FakeApi(
        [
            FakeRun(
                "a1",
                {
                    **run_config(1e-4, 1e-4, 0, "hinge"),
                    "_wandb": {"x": 1},
                    "dataset": {"num_modes": 8, "seed": 0},
                },
                {
                    "status": "finished",
                    "val/modes_recovered": 8.0,
                    "_runtime": 12.5,
                    "trainer/global_step": 300,
                },
                "finished",
                rows([1.0, 0.9, 0.8]),
                "sweep/1",
            ),
            FakeRun(
                "b2",
                {**run_config(1e-3, 1e-4, 1, "hinge"), "dataset": {"num_modes": 8, "seed": 1}},
                {"val/modes_recovered": 3.0, "train/g_loss": "nan"},
                "crashed",
                rows([1.0, "nan"]),
                "sweep/1",
            ),
            FakeRun("c3", run_config(1e-3, 1e-3, 0, "hinge"), {}, "running", [], "other"),
        ]
    )


def test_wandb_runs_map_config_summary_history_and_state() -> None:
    api = fake_api()
    runs = load_wandb_runs("ent/proj", "sweep/1", api=api, samples=50)
    assert api.calls == [("ent/proj", {"group": "sweep/1"})]
    assert [r.name for r in runs] == ["mlp_hinge_ring8-a1", "mlp_hinge_ring8-b2"]  # same names: ids added
    a, b = runs
    # What the sweep varied: lr_g and seed (dataset.seed copies seed and is left out); lr_d is constant.
    assert a.overrides == {"seed": 0, "schedule.lr_g": 0.0001}
    assert b.overrides == {"seed": 1, "schedule.lr_g": 0.001}
    assert (a.status, a.steps, a.seconds) == ("finished", 300, 12.5)
    assert a.history["train/g_loss"] == [(100, 1.0), (200, 0.9), (300, 0.8)]
    assert a.final == {"train/g_loss": 0.8, "val/modes_recovered": 8.0}
    assert "trainer/global_step" not in a.history and "epoch" not in a.history
    assert b.status == "failed"  # crashed, no status in the summary
    assert math.isnan(b.final["train/g_loss"]) and b.steps == 200
    assert param(b, "schedule.lr_d") == 0.0001 and param(a, "loss._target_") == "gan_research.losses.hinge"
    assert a.config.get("_wandb") is None
    assert api._runs[0].history_calls == [{"samples": 50, "pandas": False}]


def test_wandb_full_history_and_empty_group() -> None:
    api = fake_api()
    (run,) = load_wandb_runs("ent/proj", "other", api=api, samples=None)
    assert run.status == "running" and run.name == "mlp_hinge_ring8"
    assert api._runs[2].history_calls == [{"scan": True}]
    with pytest.raises(ConfigError, match="no runs in group 'missing'"):
        load_wandb_runs("ent/proj", "missing", api=api)
