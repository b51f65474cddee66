"""A search method made after a controller restart learns the sweep's trials and goes on as if
the controller had never stopped (`SearchMethod.restore`)."""

from __future__ import annotations

import pytest

from ktsweep.service.search import TrialRecord, make_search_method
from ktsweep.service.spec import parse_spec
from tests.service.scripted_sweep import SPACE, ScriptedSweep, keras_tuner_bayes


def spec_for(method, parameters, seed=5, epochs=9, **extra):
    return parse_spec(
        {
            "method": method,
            "metric": {"name": "val_loss"},
            "parameters": parameters,
            "seed": seed,
            "trial": {"hypermodel": "m:f", "data": "m:g", "fit": {"epochs": epochs}},
            **extra,
        }
    )


def continue_both(sweep, uninterrupted, restored, trials):
    """Run on with both methods side by side; `fill` asserts their suggestions are equal."""
    before = len(sweep.records)
    sweep.run(trials, uninterrupted, restored)
    return len(sweep.records) - before


def test_grid_after_a_restart_skips_every_point_already_run():
    spec = spec_for("grid", {"a": {"values": [1, 2, 3]}, "b": {"values": ["u", "v"]}})
    grid = make_search_method(spec)
    points = [grid.suggest(n, []) for n in range(6)]
    # Trials of the third, first and fifth points exist, in that order; two have finished.
    existing = [
        TrialRecord(0, points[2], "completed", 0.1),
        TrialRecord(1, points[0], "failed"),
        TrialRecord(2, points[4], "running"),
    ]
    restored = make_search_method(spec)
    restored.restore(existing)
    rest = [restored.suggest(n, existing) for n in range(3, 6)]
    assert rest == [points[1], points[3], points[5]]
    assert restored.suggest(6, existing) is None


def test_grid_after_a_restart_suggests_what_it_would_have():
    spec = spec_for("grid", {"x": {"values": [0.1, 0.3, 0.6]}, "b": {"min": 0, "max": 3}})
    sweep = ScriptedSweep(parallelism=2)
    uninterrupted = make_search_method(spec)
    sweep.run(5, uninterrupted)
    assert continue_both(sweep, uninterrupted, sweep.restored(spec), 20) == 7
    assert len({str(config) for config in (r.hyperparameters for r in sweep.records)}) == 12


def test_seeded_random_trial_n_gets_the_same_config_after_a_restart():
    spec = spec_for("random", SPACE)
    sweep = ScriptedSweep(parallelism=2)
    uninterrupted = make_search_method(spec)
    sweep.run(4, uninterrupted)
    assert continue_both(sweep, uninterrupted, sweep.restored(spec), 10) == 6


@pytest.mark.parametrize("restart_after", [3, 12, 17])
def test_seeded_tpe_after_a_restart_suggests_what_it_would_have(restart_after):
    spec = spec_for("tpe", SPACE)
    sweep = ScriptedSweep(parallelism=2, fail_every=5)
    uninterrupted = make_search_method(spec)
    sweep.run(restart_after, uninterrupted)
    restored = sweep.restored(spec)
    assert continue_both(sweep, uninterrupted, restored, 26) == 26 - restart_after


def test_tpe_restored_without_the_finished_trials_would_suggest_otherwise():
    # The counterpart of the test above: restoring is what keeps the suggestions equal.
    spec = spec_for("tpe", SPACE)
    sweep = ScriptedSweep(parallelism=1)
    uninterrupted = make_search_method(spec)
    sweep.run(15, uninterrupted)
    forgetful = make_search_method(spec)
    assert forgetful.suggest(15, sweep.records) != uninterrupted.suggest(15, sweep.records)


def test_bayes_relearns_its_trials_and_leaves_its_random_start_behind():
    spec = spec_for("bayes", {"x": {"min": 0.0, "max": 1.0}})  # one dimension: 3 random trials
    sweep = ScriptedSweep(parallelism=1)
    uninterrupted = keras_tuner_bayes(spec)
    sweep.run(6, uninterrupted)
    sweep.end_oldest(uninterrupted)
    restored = sweep.restored(spec, keras_tuner_bayes)

    trials = list(restored.oracle.trials.values())
    assert [trial.status for trial in trials] == ["COMPLETED"] * 6
    assert [trial.score for trial in trials] == [record.objective for record in sweep.records]
    assert [trial.hyperparameters.values["x"] for trial in trials] == [
        trial.hyperparameters.values["x"] for trial in uninterrupted.oracle.trials.values()
    ]

    suggestion = restored.suggest(6, sweep.records)
    # The Gaussian process chose it, fitted to the six trials from before the restart.
    assert restored.oracle.gpr.X_train_.shape == (6, 1)
    assert suggestion not in [record.hyperparameters for record in sweep.records]
    assert abs(suggestion["x"] - uninterrupted.suggest(6, sweep.records)["x"]) < 0.05


def test_bayes_made_without_restore_would_start_over_at_random():
    spec = spec_for("bayes", {"x": {"min": 0.0, "max": 1.0}})
    sweep = ScriptedSweep(parallelism=1)
    sweep.run(6, keras_tuner_bayes(spec))
    forgetful = keras_tuner_bayes(spec)
    assert forgetful.suggest(6, sweep.records) == sweep.records[0].hyperparameters
    assert not hasattr(forgetful.oracle.gpr, "X_train_")


def test_seeded_bayes_restarted_in_its_random_start_draws_on_where_it_was():
    lr = {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1}
    spec = spec_for("bayes", {"x": {"min": 0.1, "max": 0.7}, "lr": lr})
    sweep = ScriptedSweep(parallelism=2)
    uninterrupted = keras_tuner_bayes(spec)
    sweep.run(3, uninterrupted)  # two finished, one running: still random (6 initial points)
    restored = sweep.restored(spec, keras_tuner_bayes)
    assert continue_both(sweep, uninterrupted, restored, 6) == 3


def test_bayes_trial_running_at_the_restart_is_learned_when_it_ends():
    spec = spec_for("bayes", {"x": {"min": 0.0, "max": 1.0}})
    sweep = ScriptedSweep(parallelism=2)
    uninterrupted = keras_tuner_bayes(spec)
    sweep.run(4, uninterrupted)
    restored = sweep.restored(spec, keras_tuner_bayes)
    running = sweep.running
    assert {trial.trial_id for trial in restored.oracle.ongoing_trials.values()} == {
        restored._trial_ids[record.number] for record in running
    }
    while sweep.end_oldest(restored):
        pass
    oracle_trials = [restored.oracle.trials[restored._trial_ids[r.number]] for r in running]
    assert [trial.status for trial in oracle_trials] == ["COMPLETED"] * len(running)
    assert [trial.score for trial in oracle_trials] == [r.objective for r in running]
    assert not restored.oracle.ongoing_trials


@pytest.mark.parametrize("restart_after", [2, 9, 11, 13])
def test_hyperband_after_a_restart_rebuilds_its_brackets_and_goes_on_alike(restart_after):
    spec = spec_for("hyperband", {"x": {"min": 0.0, "max": 1.0}}, epochs=9)
    sweep = ScriptedSweep(parallelism=3)
    uninterrupted = make_search_method(spec)
    sweep.run(restart_after, uninterrupted)
    restored = sweep.restored(spec)

    assert restored.oracle._brackets == uninterrupted.oracle._brackets
    assert restored.oracle._current_bracket == uninterrupted.oracle._current_bracket
    assert restored.oracle._seed_state == uninterrupted.oracle._seed_state

    while True:  # to the end of the search, both methods agreeing on every trial
        made = sweep.fill(uninterrupted, restored)
        if not sweep.end_oldest(uninterrupted, restored) and not made:
            break
    continued = [s for s in sweep.suggestions[restart_after:] if s.parent is not None]
    assert continued, "the restored method continued trials from before and after the restart"
    assert all(s.epochs > s.initial_epoch for s in continued)
