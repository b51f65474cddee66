"""Early-termination rules, decided on scripted metric histories."""

import pytest

from ktsweep.service.search.base import TrialRecord
from ktsweep.service.search.stopping import (
    AshaStoppingRule,
    HyperbandStoppingRule,
    MedianStoppingRule,
    make_stopping_rule,
)
from ktsweep.service.spec import parse_spec


def trial(number, values, state="completed", metric="loss"):
    """A trial that reported `values` at steps 1, 2, ..."""
    history = [{"step": step, "metrics": {metric: v}} for step, v in enumerate(values, start=1)]
    return TrialRecord(number, {}, state, values[-1] if values else None, len(values), history)


# --- W&B hyperband -----------------------------------------------------------------------------

FINISHED = [trial(0, [5, 4, 3]), trial(1, [6, 5, 4]), trial(2, [7, 6, 5])]


def test_hyperband_stops_a_trial_outside_the_top_at_its_band():
    rule = HyperbandStoppingRule("loss", bands=[1, 2], eta=3)
    running = trial(3, [8, 7], state="running")
    # Band 2: values 4, 5, 6, 7; threshold = sorted[int(4 / 3)] = 5; 7 > 5.
    assert rule.should_stop(running, [*FINISHED, running])


def test_hyperband_keeps_a_trial_within_the_top_at_its_band():
    rule = HyperbandStoppingRule("loss", bands=[1, 2], eta=3)
    running = trial(3, [8, 4.5], state="running")
    assert not rule.should_stop(running, [*FINISHED, running])


def test_hyperband_never_stops_before_the_first_band():
    rule = HyperbandStoppingRule("loss", bands=[3, 9], eta=3)
    running = trial(3, [100, 100], state="running")
    assert not rule.should_stop(running, [*FINISHED, running])


def test_hyperband_strict_judges_the_value_at_the_band_not_the_best_so_far():
    # Band 2 values: 4, 5, 6 and the running trial's 9; threshold sorted[int(4 / 3)] = 5.
    running = trial(3, [1, 9], state="running")  # best so far (1) is good, value at band is not
    others = [*FINISHED, running]
    assert HyperbandStoppingRule("loss", [1, 2], eta=3, strict=True).should_stop(running, others)
    assert not HyperbandStoppingRule("loss", [2], eta=3, strict=False).should_stop(running, others)


def test_hyperband_maximizes_when_the_goal_says_so():
    finished = [trial(n, [v], metric="acc") for n, v in enumerate([0.9, 0.8, 0.7])]
    rule = HyperbandStoppingRule("acc", bands=[1], eta=3, maximize=True)
    low, high = trial(3, [0.5], "running", "acc"), trial(4, [0.95], "running", "acc")
    assert rule.should_stop(low, [*finished, low])
    assert not rule.should_stop(high, [*finished, high])


def test_hyperband_ignores_missing_and_non_finite_values():
    rule = HyperbandStoppingRule("loss", bands=[1], eta=3)
    broken = TrialRecord(3, {}, "running", history=[{"step": 1, "metrics": {"loss": None}}])
    assert not rule.should_stop(broken, [*FINISHED, broken])


def test_hyperband_spec_builds_wandb_bands():
    spec = parse_spec(
        {
            "method": "random",
            "metric": {"name": "loss"},
            "parameters": {"x": {"values": [1]}},
            "early_terminate": {"type": "hyperband", "max_iter": 27, "s": 2, "eta": 3},
            "trial": {"hypermodel": "m:f", "data": "m:g"},
        }
    )
    assert make_stopping_rule(spec).bands == [3, 9]


# --- ASHA --------------------------------------------------------------------------------------


def asha_rule():
    return AshaStoppingRule("acc", min_iter=1, eta=3, maximize=True)


def test_asha_stops_a_trial_below_the_top_third_at_a_rung():
    rule = asha_rule()
    finished = [trial(n, [v], metric="acc") for n, v in enumerate([0.9, 0.8, 0.7, 0.6, 0.5])]
    for record in finished:
        rule.should_stop(record, finished)
        rule.trial_ended(record)
    low = trial(5, [0.55], "running", "acc")
    assert rule.should_stop(low, [*finished, low])


def test_asha_promotes_a_trial_in_the_top_third():
    rule = asha_rule()
    finished = [trial(n, [v], metric="acc") for n, v in enumerate([0.9, 0.8, 0.7, 0.6, 0.5])]
    high = trial(5, [0.95], "running", "acc")
    assert not rule.should_stop(high, [*finished, high])  # finished trials are replayed


def test_asha_judges_only_at_rungs():
    rule = asha_rule()
    finished = [trial(n, [0.9, 0.9, 0.9], metric="acc") for n in range(6)]
    # Passes rung 1 (step 1) as the best; step 2 is no rung, so a drop there is not judged.
    climbing = trial(6, [0.95], "running", "acc")
    assert not rule.should_stop(climbing, [*finished, climbing])
    climbing.history.append({"step": 2, "metrics": {"acc": 0.1}})
    assert not rule.should_stop(climbing, [*finished, climbing])
    climbing.history.append({"step": 3, "metrics": {"acc": 0.1}})  # rung 3: worst of seven
    assert rule.should_stop(climbing, [*finished, climbing])


# --- median ------------------------------------------------------------------------------------

CURVES = [[1.0, 0.8, 0.6], [1.0, 0.7, 0.5], [0.9, 0.6, 0.4], [1.1, 0.9, 0.7], [1.2, 1.0, 0.8]]


def median_rule(**kwargs):
    return MedianStoppingRule("loss", **{"n_startup_trials": 5, **kwargs})


def test_median_stops_a_trial_worse_than_the_median_at_the_same_step():
    finished = [trial(n, curve) for n, curve in enumerate(CURVES)]
    running = trial(5, [1.0, 0.95], state="running")  # median at step 2 is 0.8
    assert median_rule().should_stop(running, [*finished, running])


def test_median_keeps_a_trial_better_than_the_median():
    finished = [trial(n, curve) for n, curve in enumerate(CURVES)]
    running = trial(5, [1.0, 0.65], state="running")
    assert not median_rule().should_stop(running, [*finished, running])


def test_median_waits_for_its_startup_trials():
    finished = [trial(n, curve) for n, curve in enumerate(CURVES[:4])]
    running = trial(4, [5.0, 5.0], state="running")
    assert not median_rule().should_stop(running, [*finished, running])


def test_median_waits_for_warmup_steps():
    # optuna's semantics: steps below `n_warmup_steps` are never judged.
    finished = [trial(n, curve) for n, curve in enumerate(CURVES)]
    running = trial(5, [5.0, 5.0], state="running")
    assert not median_rule(n_warmup_steps=3).should_stop(running, [*finished, running])
    running.history.append({"step": 3, "metrics": {"loss": 5.0}})
    assert median_rule(n_warmup_steps=3).should_stop(running, [*finished, running])


def test_stopped_trials_do_not_count_toward_the_median():
    rule = median_rule()
    finished = [trial(n, curve) for n, curve in enumerate(CURVES)]
    stopped = [trial(5 + n, [9.0, 9.0], state="stopped") for n in range(5)]
    running = trial(10, [1.0, 0.95], state="running")
    assert rule.should_stop(running, [*finished, *stopped, running])


@pytest.mark.parametrize(
    ("config", "rule_type"),
    [
        ({"type": "asha"}, AshaStoppingRule),
        ({"type": "median"}, MedianStoppingRule),
        ({"type": "hyperband", "min_iter": 1}, HyperbandStoppingRule),
    ],
)
def test_spec_early_terminate_picks_the_rule(config, rule_type):
    spec = parse_spec(
        {
            "method": "random",
            "metric": {"name": "loss"},
            "parameters": {"x": {"values": [1]}},
            "early_terminate": config,
            "trial": {"hypermodel": "m:f", "data": "m:g"},
        }
    )
    assert isinstance(make_stopping_rule(spec), rule_type)
