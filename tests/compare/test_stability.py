"""The stability labels on hand-made curves, each label with its reason, and the rules' documentation."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from gan_research.compare.runs import RunRecord
from gan_research.compare.stability import StabilityRules, label_run, relative_oscillation
from gan_research.config import CONFIG_DIR
from gan_research.errors import ConfigError

RULES = StabilityRules()
N = 60  # logged points of a 6000-step run logged every 100 steps


def make_run(
    d: np.ndarray | list[float] | None = None,
    g: np.ndarray | list[float] | None = None,
    *,
    status: str = "finished",
    reason: str | None = None,
    final: dict[str, float] | None = None,
    evals: dict[str, list[float]] | None = None,
    config: dict | None = None,
) -> RunRecord:
    history: dict[str, list[tuple[int, float]]] = {}
    for key, values in (("train/d_loss", d), ("train/g_loss", g)):
        if values is not None:
            history[key] = [(100 * (i + 1), float(v)) for i, v in enumerate(values)]
    for key, values in (evals or {}).items():
        history[key] = [(1000 * (i + 1), float(v)) for i, v in enumerate(values)]
    last = {k: v[-1][1] for k, v in history.items()}
    return RunRecord(
        path=Path("r"),
        name="r",
        config=config if config is not None else {"dataset": {"num_modes": 8}},
        status=status,
        reason=reason,
        steps=100 * N,
        history=history,
        final={**last, **(final or {})},
    )


t = np.arange(N, dtype=float)
rng = np.random.default_rng(0)
DECAY_D = 0.7 + 0.6 * np.exp(-t / 8)
DECAY_G = 1.4 + 1.5 * np.exp(-t / 8)


def test_smooth_decaying_curves_converge() -> None:
    label, reason = label_run(make_run(DECAY_D, DECAY_G), rules=RULES)
    assert label == "converged"
    assert reason.startswith("finished; steady (largest relative oscillation")


def test_minibatch_noise_is_not_oscillation() -> None:
    # Step-to-step noise of 30% of the level: the moving average removes it.
    noisy = make_run(DECAY_D + rng.normal(0, 0.2, N), DECAY_G + rng.normal(0, 0.4, N))
    assert label_run(noisy, rules=RULES)[0] == "converged"


def test_a_large_sine_wave_oscillates() -> None:
    g = 1.5 + 1.0 * np.sin(2 * np.pi * t / 12)  # the loss swings between 0.5 and 2.5
    label, reason = label_run(make_run(DECAY_D, g), rules=RULES)
    assert label == "oscillating"
    assert reason.startswith("train/g_loss oscillates: relative amplitude 0.")
    assert "> max_relative_oscillation=0.25" in reason
    # A swing a third of the level stays under the default threshold.
    small = 1.5 + 0.5 * np.sin(2 * np.pi * t / 12)
    assert label_run(make_run(DECAY_D, small), rules=RULES)[0] == "converged"
    # ... but not under a stricter one.
    strict = StabilityRules(max_relative_oscillation=0.1)
    assert label_run(make_run(DECAY_D, small), rules=strict)[0] == "oscillating"


def test_relative_oscillation_removes_the_trend_and_the_scale() -> None:
    steps = list(range(40))
    assert relative_oscillation(steps, [5.0 - 0.1 * s for s in steps], smooth=5, eps=0.0) < 1e-9
    sine = [1.0 + np.sin(2 * np.pi * s / 20) for s in steps]
    scaled = [100 * v for v in sine]
    assert relative_oscillation(steps, sine, 5, 0.0) == pytest.approx(
        relative_oscillation(steps, scaled, 5, 0.0)
    )


def test_modes_jumping_back_and_forth_oscillate() -> None:
    run = make_run(DECAY_D, DECAY_G, evals={"val/modes_recovered": [2, 5, 8, 8, 3, 8]})
    label, reason = label_run(run, rules=RULES)
    assert label == "oscillating"
    assert reason.startswith("val/modes_recovered swings 8 -> 3 -> 8 between steps 4000 and 6000")
    # A swing before the window (early training) is not judged.
    rising = make_run(DECAY_D, DECAY_G, evals={"val/modes_recovered": [1, 5, 2, 6, 7, 8, 8, 8]})
    assert label_run(rising, rules=RULES)[0] == "converged"
    fid = make_run(DECAY_D, DECAY_G, evals={"val/fid_digits": [90, 40, 80, 35]})
    assert label_run(fid, rules=RULES)[1].startswith("val/fid_digits swings 40 -> 80 -> 35")


def test_nan_in_the_tail_diverges() -> None:
    g = DECAY_G.copy()
    g[50] = math.nan
    label, reason = label_run(make_run(DECAY_D, g), rules=RULES)
    assert (label, reason) == ("diverged", "train/g_loss = nan at step 5100 (in the last 50% of the run)")
    # A NaN long before the window, and the run recovered, is history.
    early = DECAY_G.copy()
    early[3] = math.nan
    assert label_run(make_run(DECAY_D, early), rules=RULES)[0] == "converged"


def test_huge_losses_diverge() -> None:
    d = DECAY_D.copy()
    d[-5:] = [2e4, 5e4, 1e5, 3e5, 1e6]
    label, reason = label_run(make_run(d, DECAY_G), rules=RULES)
    assert label == "diverged"
    assert reason == "|train/d_loss| = 2e+04 > max_abs_loss=10000 at step 5600"


def test_a_diverged_status_and_a_nan_final_value_diverge() -> None:
    run = make_run(DECAY_D, DECAY_G, status="diverged", reason="train/d_loss is nan at step 812")
    assert label_run(run, rules=RULES) == ("diverged", "status diverged: train/d_loss is nan at step 812")
    # A run killed with an inf loss diverged although it never wrote a status line.
    killed = make_run(DECAY_D, DECAY_G, status="running", final={"train/g_loss": math.inf})
    assert label_run(killed, rules=RULES)[1] == "train/g_loss = inf at step 6000 (in the last 50% of the run)"


def test_two_of_eight_modes_is_collapse() -> None:
    run = make_run(DECAY_D, DECAY_G, final={"val/modes_recovered": 2.0})
    assert label_run(run, rules=RULES) == (
        "collapsed",
        "val/modes_recovered = 2/8 (0.25) < min_modes_fraction=0.5",
    )
    # val/modes_total wins over the config; 4 of 25 grid modes.
    grid = make_run(DECAY_D, DECAY_G, final={"val/modes_recovered": 4.0, "val/modes_total": 25.0})
    assert label_run(grid, rules=RULES)[1].startswith("val/modes_recovered = 4/25")
    # grid25's config has grid_size, not num_modes.
    grid_cfg = make_run(
        DECAY_D, DECAY_G, final={"val/modes_recovered": 4.0}, config={"dataset": {"grid_size": 5}}
    )
    assert label_run(grid_cfg, rules=RULES)[0] == "collapsed"
    # Without a modes total the fraction cannot be judged.
    unknown = make_run(DECAY_D, DECAY_G, final={"val/modes_recovered": 2.0}, config={})
    assert label_run(unknown, rules=RULES)[0] == "converged"


def test_collapse_flag_and_classes_covered() -> None:
    flagged = make_run(DECAY_D, DECAY_G, final={"val/collapse": 1.0})
    assert label_run(flagged, rules=RULES)[0] == "collapsed"
    classes = make_run(DECAY_D, DECAY_G, final={"val/classes_covered": 3.0, "val/num_classes": 10.0})
    assert label_run(classes, rules=RULES) == (
        "collapsed",
        "val/classes_covered = 3/10 (0.30) < min_classes_fraction=0.5",
    )


def test_a_normal_exception_fails_and_no_status_line_is_running() -> None:
    failed = make_run(DECAY_D[:10], DECAY_G[:10], status="failed", reason="RuntimeError: CUDA out of memory")
    assert label_run(failed, rules=RULES) == ("failed", "RuntimeError: CUDA out of memory")
    running = make_run(DECAY_D[:10], DECAY_G[:10], status="running")
    assert label_run(running, rules=RULES) == (
        "running",
        "no status line: still running or killed (last step 6000)",
    )
    empty = RunRecord(path=Path("r"), name="r")
    assert label_run(empty, rules=RULES)[1].startswith("no metrics and no status line yet")
    interrupted = make_run(DECAY_D, DECAY_G, status="interrupted")
    assert label_run(interrupted, rules=RULES)[0] == "running"
    # Collapse is only judged on finished runs.
    partial = make_run(DECAY_D, DECAY_G, status="running", final={"val/modes_recovered": 1.0})
    assert label_run(partial, rules=RULES)[0] == "running"


def test_rules_from_mapping_checks_keys_and_types() -> None:
    rules = StabilityRules.from_mapping({"max_abs_loss": "1e4", "window": 1, "loss_keys": ["train/g_loss"]})
    assert rules.max_abs_loss == 1e4 and rules.window == 1.0 and rules.loss_keys == ("train/g_loss",)
    with pytest.raises(ConfigError, match=r"unknown rules key\(s\) \['windw'\]; valid keys: .*'window'"):
        StabilityRules.from_mapping({"windw": 0.5})
    with pytest.raises(ConfigError, match=r"rules.window must be in \(0, 1\], got 0.0"):
        StabilityRules(window=0.0)
    with pytest.raises(ConfigError, match=r"rules\.eps must be a number"):
        StabilityRules.from_mapping({"eps": "small"})


def test_conf_and_readme_state_the_default_rules() -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="compare", overrides=["sweep_dir=x"])
    assert StabilityRules.from_mapping(cfg.rules) == StabilityRules()
    text = (Path(__file__).parents[2] / "README.md").read_text()
    for field in dataclasses.fields(StabilityRules):
        value = field.default
        shown = ", ".join(value) if isinstance(value, tuple) else f"{value:g}"
        assert f"| `{field.name}` | {shown} |" in text, field.name
