"""`method: custom` with `scheduler: {engine: optuna}`: an Optuna study with the sweep's goals."""

from __future__ import annotations

import copy
from datetime import timedelta

import optuna
import pytest

from ktsweep.service.compat.optuna import nsga2_generation_key
from ktsweep.service.search import TrialRecord, make_search_method
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
    assert isinstance(study.sampler, optuna.samplers.NSGAIISampler)


def test_one_objective_is_a_tpe_study_in_its_direction():
    study = make_search_method(spec_for([{"name": "val_acc", "goal": "maximize"}])).study_for(0, [])
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert isinstance(study.sampler, optuna.samplers.TPESampler)


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


def test_learned_trials_form_nsga2_generations_in_number_order():
    spec = spec_for()
    search = OptunaStudySearch(spec, space=make_search_method(spec).space, population_size=4)
    sweep = TwoObjectiveSweep(parallelism=2, fail_every=4)
    sweep.run(14, search)
    study = search.study_for(14, sweep.records)
    study.ask().suggest_float("x", 0.0, 1.0)  # the sampler places the trial as it samples
    *learned, asked = study.get_trials()
    key = nsga2_generation_key()
    assert [trial.system_attrs[key] for trial in learned] == [i // 4 for i in range(len(learned))]
    # NSGA-II's own rule: a full last generation means the next trial starts a new one.
    assert asked.system_attrs[key] == len(learned) // 4


def test_nsga2_breeds_away_from_dominated_trials():
    bred = []
    for seed in range(4):
        spec = spec_for(seed=seed)
        search = OptunaStudySearch(spec, space=make_search_method(spec).space, population_size=6)
        sweep = TwoObjectiveSweep(parallelism=2)
        sweep.run(48, search)
        bred += [record.hyperparameters["c"] for record in sweep.records[24:]]
    # c = bad is dominated: random draws pick it half the time, bred generations far less
    # (mutation still redraws it now and then).
    assert bred.count("bad") / len(bred) < 0.4


@pytest.mark.parametrize("restart_after", [3, 9, 15])
def test_seeded_study_after_a_restart_suggests_what_it_would_have(restart_after):
    spec = spec_for()
    space = make_search_method(spec).space
    uninterrupted = OptunaStudySearch(spec, space=space, population_size=4)
    sweep = TwoObjectiveSweep(parallelism=2, fail_every=5)
    sweep.run(restart_after, uninterrupted)
    restored = OptunaStudySearch(spec, space=space, population_size=4)
    restored.restore(copy.deepcopy(sweep.records))
    sweep.run(24, uninterrupted, restored)
    assert len(sweep.records) == 24


def test_a_study_restored_without_the_trials_would_suggest_otherwise():
    # The counterpart of the test above: restoring is what keeps the suggestions equal.
    spec = spec_for()
    space = make_search_method(spec).space
    uninterrupted = OptunaStudySearch(spec, space=space, population_size=4)
    sweep = TwoObjectiveSweep(parallelism=2)
    sweep.run(12, uninterrupted)
    forgetful = OptunaStudySearch(spec, space=space, population_size=4)
    assert forgetful.suggest(12, sweep.records) != uninterrupted.suggest(12, sweep.records)
