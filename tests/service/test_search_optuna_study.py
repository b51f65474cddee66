"""`method: custom` with `scheduler: {engine: optuna}`: an Optuna study with the sweep's goals."""

from __future__ import annotations

import copy
from datetime import timedelta

import optuna
import pytest

from ktsweep.service.search import TrialRecord, make_search_method
from ktsweep.service.search.bayes_search import gp_sampler_available
from ktsweep.service.search.optuna_study_search import OptunaStudySearch
from ktsweep.service.spec import parse_spec
from tests.service.scripted_sweep import SPACE, START

OBJECTIVES = [
    {"name": "val_loss", "goal": "minimize"},
    {"name": "model/parameters", "goal": "minimize"},
]


def spec_for(objectives=OBJECTIVES, seed=5, **extra):
    spec = {
        "method": "custom",
        "scheduler": {"engine": "optuna"},
        "parameters": SPACE,
        "seed": seed,
        "trial": {"hypermodel": "m:f", "data": "m:g"},
        **extra,
    }
    if len(objectives) == 1:
        spec["metric"] = objectives[0]
    else:
        spec["metrics"] = objectives
    return parse_spec(spec)


def scores(config):
    """Two objectives that pull `x` apart (a front along x), both worse with c = bad."""
    penalty = 0.0 if config["c"] == "good" else 0.5
    return {
        "val_loss": config["x"] + penalty,
        "model/parameters": 1000 * (1 - config["x"]) + 500 * penalty,
    }


class TwoObjectiveSweep:
    """Runs trials `parallelism` at a time, ending the oldest first; every method given sees
    the same trials and must suggest the same configuration. `model/parameters` is in the
    final metrics only (as the worker records it), `val_loss` in the reports too."""

    def __init__(self, parallelism=2, fail_every=None):
        self.parallelism = parallelism
        self.fail_every = fail_every
        self.records: list[TrialRecord] = []

    def run(self, trials, *methods):
        while len(self.records) < trials:
            while sum(r.state == "running" for r in self.records) < self.parallelism:
                number = len(self.records)
                answers = [method.suggest(number, self.records) for method in methods]
                assert all(answer == answers[0] for answer in answers), (number, answers)
                self.records.append(TrialRecord(number, answers[0], "running"))
                if len(self.records) >= trials:
                    return
            record = next(r for r in self.records if r.state == "running")
            if self.fail_every and record.number % self.fail_every == self.fail_every - 1:
                record.state = "failed"
            else:
                metrics = scores(record.hyperparameters)
                record.state, record.metrics = "completed", metrics
                record.history = [{"step": 1, "metrics": {"val_loss": metrics["val_loss"]}}]
            record.finished_at = START + timedelta(seconds=record.number)
            for method in methods:
                method.observe(copy.deepcopy(record))


def test_custom_optuna_sweep_makes_an_optuna_study_search():
    assert isinstance(make_search_method(spec_for()), OptunaStudySearch)


def test_the_study_directions_are_the_metrics_goals():
    objectives = [{"name": "val_accuracy", "goal": "maximize"}, OBJECTIVES[1]]
    study = make_search_method(spec_for(objectives)).study_for(0, [])
    assert study.directions == [
        optuna.study.StudyDirection.MAXIMIZE,
        optuna.study.StudyDirection.MINIMIZE,
    ]
    # Multi-objective TPE: Optuna's TPESampler over a study with several directions.
    assert isinstance(study.sampler, optuna.samplers.TPESampler)


def test_one_objective_is_a_gaussian_process_study_in_its_direction():
    study = make_search_method(spec_for([{"name": "val_acc", "goal": "maximize"}])).study_for(0, [])
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    expected = optuna.samplers.GPSampler if gp_sampler_available() else optuna.samplers.TPESampler
    assert isinstance(study.sampler, expected)


def test_trials_are_learned_with_their_objective_values_from_their_metrics():
    search = make_search_method(spec_for())
    sweep = TwoObjectiveSweep(parallelism=1)
    sweep.run(3, search)
    learned = search.study_for(3, sweep.records).get_trials()
    finished = [r for r in sweep.records if r.state == "completed"]
    assert [trial.values for trial in learned] == [
        [r.metrics["val_loss"], r.metrics["model/parameters"]] for r in finished
    ]


def test_failed_trials_teach_the_study_nothing():
    search = make_search_method(spec_for())
    sweep = TwoObjectiveSweep(parallelism=1, fail_every=2)
    sweep.run(6, search)
    completed = sum(record.state == "completed" for record in sweep.records)
    assert len(search.study_for(6, sweep.records).get_trials()) == completed < 6


def test_the_study_learns_the_trials_in_number_order():
    search = make_search_method(spec_for())
    sweep = TwoObjectiveSweep(parallelism=2, fail_every=4)
    sweep.run(14, search)
    learned = search.study_for(14, sweep.records).get_trials()
    completed = sorted((r for r in sweep.records if r.state == "completed"), key=lambda r: r.number)
    assert [trial.params["x"] for trial in learned] == [r.hyperparameters["x"] for r in completed]


def test_multi_objective_tpe_draws_away_from_dominated_trials():
    learned_draws = []
    for seed in range(4):
        search = make_search_method(spec_for(seed=seed))
        sweep = TwoObjectiveSweep(parallelism=2)
        sweep.run(40, search)
        learned_draws += [record.hyperparameters["c"] for record in sweep.records[20:]]
    # c = bad is dominated: random draws (the first 10 trials) pick it half the time, draws
    # learned from the front far less.
    assert learned_draws.count("bad") / len(learned_draws) < 0.3


@pytest.mark.parametrize("restart_after", [3, 9, 15])
def test_seeded_study_after_a_restart_suggests_what_it_would_have(restart_after):
    spec = spec_for()
    space = make_search_method(spec).space
    uninterrupted = OptunaStudySearch(spec, space=space)
    sweep = TwoObjectiveSweep(parallelism=2, fail_every=5)
    sweep.run(restart_after, uninterrupted)
    restored = OptunaStudySearch(spec, space=space)
    restored.restore(copy.deepcopy(sweep.records))
    sweep.run(24, uninterrupted, restored)
    assert len(sweep.records) == 24


def test_a_study_restored_without_the_trials_would_suggest_otherwise():
    # The counterpart of the test above: restoring is what keeps the suggestions equal.
    spec = spec_for()
    space = make_search_method(spec).space
    uninterrupted = OptunaStudySearch(spec, space=space)
    sweep = TwoObjectiveSweep(parallelism=2)
    sweep.run(12, uninterrupted)
    forgetful = OptunaStudySearch(spec, space=space)
    assert forgetful.suggest(12, sweep.records) != uninterrupted.suggest(12, sweep.records)
