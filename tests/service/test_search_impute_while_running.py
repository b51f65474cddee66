"""W&B's `metric.impute_while_running`: running trials count in bayes and tpe decisions with an
imputed value, which their real value replaces once they end."""

from __future__ import annotations

import numpy as np
import pytest

from ktsweep.service.search import TrialRecord, make_search_method
from ktsweep.service.spec import parse_spec
from tests.service.scripted_sweep import keras_tuner_bayes


def spec_for(method, impute_while_running="false", parameters=None):
    return parse_spec(
        {
            "method": method,
            "metric": {"name": "val_loss", "impute_while_running": impute_while_running},
            "parameters": parameters or {"x": {"min": 0.0, "max": 1.0}},
            "seed": 3,
            "trial": {"hypermodel": "m:f", "data": "m:g"},
        }
    )


def completed(number, config, value):
    history = [{"step": 1, "metrics": {"val_loss": value}}]
    return TrialRecord(number, config, "completed", value, 1, history)


def running(number, config, latest=None):
    history = [] if latest is None else [{"step": 1, "metrics": {"val_loss": latest}}]
    return TrialRecord(number, config, "running", latest, len(history), history)


def start(method, finished_values, running_latest):
    """Suggest and finish one trial per value of `finished_values`, then suggest one running
    trial per value of `running_latest` (its latest report); returns every trial."""
    records = []
    for value in finished_values:
        record = completed(len(records), method.suggest(len(records), records), value)
        method.observe(record)
        records.append(record)
    for latest in running_latest:
        records.append(running(len(records), method.suggest(len(records), records), latest))
    return records


@pytest.mark.parametrize(
    ("strategy", "reported", "expected"),
    [
        ("false", [0.3, 0.05, 0.1], None),
        ("latest", [0.3, 0.05, 0.1], 0.1),
        ("best", [0.3, 0.05, 0.1], 0.05),  # its own best so far (val_loss: the lowest)
        ("worst", [0.3, 0.05, 0.1], 0.3),
        ("latest", [], 0.9),  # nothing reported yet: as a failed trial, the worst finished
        ("best", [], 0.2),  # nothing reported yet: the best finished value
        ("worst", [], 0.9),
    ],
)
def test_running_trial_counts_with_the_value_its_strategy_imputes(strategy, reported, expected):
    search = make_search_method(spec_for("random", strategy))
    start(search, [0.2, 0.9], [])
    history = [{"step": step, "metrics": {"val_loss": v}} for step, v in enumerate(reported, 1)]
    trial = TrialRecord(2, {"x": 0.5}, "running", None, len(history), history)
    assert search.value_while_running(trial) == expected


def test_spec_accepts_yaml_false_as_wandb_false():
    spec = parse_spec(
        "method: tpe\nmetric: {name: loss, impute_while_running: false}\n"
        "parameters: {x: {min: 0.0, max: 1.0}}\ntrial: {hypermodel: 'm:f', data: 'm:g'}\n"
    )
    assert spec.metric.impute_while_running == "false"


def test_tpe_ignores_running_trials_by_default():
    search = make_search_method(spec_for("tpe"))
    records = start(search, [0.3, 0.6, 0.9], [0.01])
    assert [t.value for t in search.study_for(4, records).trials] == [0.3, 0.6, 0.9]


def test_tpe_counts_a_running_trial_at_its_latest_value_until_its_real_value_arrives():
    search = make_search_method(spec_for("tpe", "latest"))
    records = start(search, [0.3, 0.6, 0.9], [0.01])
    trials = search.study_for(4, records).trials
    assert [t.value for t in trials] == [0.3, 0.6, 0.9, 0.01]
    assert trials[3].params["x"] == pytest.approx(records[3].hyperparameters["x"])

    records[3] = completed(3, records[3].hyperparameters, 0.4)
    search.observe(records[3])
    assert [t.value for t in search.study_for(4, records).trials] == [0.3, 0.6, 0.9, 0.4]


def test_tpe_suggests_otherwise_when_running_trials_count():
    counting = make_search_method(spec_for("tpe", "latest"))
    ignoring = make_search_method(spec_for("tpe"))
    values = [0.5 + 0.01 * n for n in range(12)]
    records = start(counting, values, [0.001, 0.002])
    start(ignoring, values, [0.001, 0.002])
    assert counting.suggest(14, records) != ignoring.suggest(14, records)


def fitted_targets(search) -> dict[float, float]:
    """The Gaussian process's training targets by x, as the oracle scored them."""
    gpr = search.oracle.gpr
    targets = gpr.y_train_ * gpr._y_train_std + gpr._y_train_mean
    return {round(float(x[0]), 9): float(y) for x, y in zip(gpr.X_train_, targets, strict=True)}


def test_bayes_fits_running_trials_at_their_imputed_value_then_at_their_real_one():
    search = keras_tuner_bayes(spec_for("bayes", "latest"))  # one dimension: 3 random trials
    records = start(search, [0.3, 0.6, 0.9], [0.01, 0.02])
    search.suggest(5, records)
    targets = fitted_targets(search)
    for record in records:
        assert targets[round(record.hyperparameters["x"], 9)] == pytest.approx(record.objective)
    # Outside `suggest` they are running trials of the oracle again.
    ongoing = {trial.trial_id for trial in search.oracle.ongoing_trials.values()}
    assert {search._trial_ids[3], search._trial_ids[4]} <= ongoing
    assert search.oracle.trials[search._trial_ids[3]].status == "RUNNING"

    records[3] = completed(3, records[3].hyperparameters, 0.7)
    search.observe(records[3])
    search.suggest(6, records)
    assert fitted_targets(search)[round(records[3].hyperparameters["x"], 9)] == pytest.approx(0.7)


def test_bayes_without_impute_while_running_guesses_running_trials_from_its_process():
    search = keras_tuner_bayes(spec_for("bayes"))
    records = start(search, [0.3, 0.6, 0.9, 0.5], [0.01])
    search.suggest(5, records)
    guess = fitted_targets(search)[round(records[4].hyperparameters["x"], 9)]
    assert not np.isclose(guess, 0.01)
