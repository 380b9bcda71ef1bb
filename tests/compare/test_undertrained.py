"""The ``undertrained`` label: modes or quality still rising at the end is not collapse."""

from __future__ import annotations

import math

import pytest

from gan_research.compare.stability import LABELS, StabilityRules, label_run, still_rising
from gan_research.errors import ConfigError
from tests.compare.test_stability import DECAY_D, DECAY_G, make_run

RULES = StabilityRules()
MODES, HQ = "val/modes_recovered", "val/high_quality"


@pytest.mark.parametrize(
    ("values", "rising"),
    [
        ([2, 4, 6], True),
        ([60, 75, 90], True),
        ([0, 0, 1], True),  # from nothing: any rise is more than 5% of the largest value
        ([2, 2, 2], False),  # flat
        ([4, 6, 6], False),  # levelled off at the last evaluation
        ([2, 6, 4], False),  # fell back: the last is not the highest
        ([80, 79, 81], False),  # evaluation noise: 1 < 0.05 x 81
        ([24, 24, 25], False),  # one mode of 25: 1 < 0.05 x 25
        ([23, 24, 25], True),
        ([2, math.nan, 6], False),
    ],
)
def test_still_rising_on_hand_made_values(values: list[float], rising: bool) -> None:
    assert still_rising([float(v) for v in values], RULES.min_rise) is rising


def test_modes_rising_2_4_6_at_the_end_are_undertrained() -> None:
    run = make_run(DECAY_D, DECAY_G, evals={MODES: [2, 2, 2, 4, 6]})
    label, reason = label_run(run, rules=RULES)
    assert label == "undertrained"
    assert reason == (
        "val/modes_recovered still rising: 2 -> 4 -> 6 over its last 3 evaluations (steps 3000-5000), "
        "up 4 > min_rise=0.05 x 6"
    )


def test_rising_modes_below_the_collapse_threshold_are_undertrained_and_say_so() -> None:
    # 3 of 8 modes at the end would be collapse on its own; climbing 1 -> 2 -> 3 it is not.
    run = make_run(DECAY_D, DECAY_G, evals={MODES: [1, 1, 2, 3]})
    label, reason = label_run(run, rules=RULES)
    assert label == "undertrained"
    assert reason.startswith("val/modes_recovered still rising: 1 -> 2 -> 3")
    assert reason.endswith(
        "; the final values alone read as collapsed "
        "(val/modes_recovered = 3/8 (0.38) < min_modes_fraction=0.5)"
    )


def test_flat_modes_2_2_2_stay_collapsed() -> None:
    run = make_run(DECAY_D, DECAY_G, evals={MODES: [2, 2, 2], HQ: [90, 90, 90]})
    assert label_run(run, rules=RULES) == (
        "collapsed",
        "val/modes_recovered = 2/8 (0.25) < min_modes_fraction=0.5",
    )
    # Too few evaluations to call a trend: judged on the final value as before.
    short = make_run(DECAY_D, DECAY_G, evals={MODES: [1, 3]})
    assert label_run(short, rules=RULES)[0] == "collapsed"


def test_rising_quality_with_all_modes_is_not_collapsed() -> None:
    run = make_run(DECAY_D, DECAY_G, evals={MODES: [8, 8, 8], HQ: [60.0, 75.0, 90.0]})
    label, reason = label_run(run, rules=RULES)
    assert label != "collapsed"
    assert label == "undertrained"
    assert reason.startswith("val/high_quality still rising: 60 -> 75 -> 90")
    # Quality that has levelled off (evaluation noise) with all modes: converged.
    steady = make_run(DECAY_D, DECAY_G, evals={MODES: [8, 8, 8], HQ: [90.0, 89.0, 90.5]})
    assert label_run(steady, rules=RULES)[0] == "converged"


def test_diverged_and_failed_come_before_undertrained() -> None:
    g = DECAY_G.copy()
    g[-2] = math.inf
    diverged = make_run(DECAY_D, g, evals={MODES: [2, 4, 6]})
    assert label_run(diverged, rules=RULES)[0] == "diverged"
    failed = make_run(DECAY_D, DECAY_G, status="failed", reason="boom", evals={MODES: [2, 4, 6]})
    assert label_run(failed, rules=RULES) == ("failed", "boom")
    running = make_run(DECAY_D, DECAY_G, status="running", evals={MODES: [2, 4, 6]})
    assert label_run(running, rules=RULES)[0] == "running"


def test_the_window_threshold_and_metrics_are_rules() -> None:
    run = make_run(DECAY_D, DECAY_G, evals={MODES: [6, 2, 4, 6]})
    assert label_run(run, rules=RULES)[0] == "undertrained"  # 2 -> 4 -> 6
    # Over 4 evaluations the run ends where it started: not a rise.
    assert label_run(run, rules=StabilityRules(rising_window=4))[0] == "converged"
    assert label_run(run, rules=StabilityRules(min_rise=0.9))[0] == "converged"
    assert label_run(run, rules=StabilityRules(rising_metrics=("val/fid*",)))[0] == "converged"
    rules = StabilityRules.from_mapping({"rising_window": 4, "min_rise": "0.1", "rising_metrics": [HQ]})
    assert (rules.rising_window, rules.min_rise, rules.rising_metrics) == (4, 0.1, (HQ,))
    with pytest.raises(ConfigError, match=r"^rules\.rising_window must be an integer >= 3, got 2$"):
        StabilityRules(rising_window=2)
    with pytest.raises(ConfigError, match=r"^rules\.min_rise must be >= 0, got -0\.1$"):
        StabilityRules(min_rise=-0.1)


def test_the_label_and_its_rule_are_listed_in_order() -> None:
    assert LABELS.index("undertrained") < LABELS.index("collapsed")
    lines = RULES.describe()
    heads = [line.split("**")[1] for line in lines]
    assert heads.index("undertrained") == heads.index("failed") + 1 == heads.index("collapsed") - 1
    assert "over its last 3 evaluations the last is the highest" in lines[heads.index("undertrained")]
