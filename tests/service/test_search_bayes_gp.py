"""`method: bayes` on Optuna's Gaussian process (where PyTorch is installed): its random start,
its fitted suggestions, parallel trials, restarts and warm starts."""

from __future__ import annotations

import copy
import math

import optuna
import pytest

from ktsweep.service.search import TrialRecord, make_search_method
from ktsweep.service.search.bayes_search import GaussianProcessSearch, KerasTunerBayesSearch
from ktsweep.service.search.warm_start import warm_start
from ktsweep.service.spec import parse_spec
from tests.service.scripted_sweep import SPACE, ScriptedSweep

pytest.importorskip("torch", reason="Optuna's GPSampler needs PyTorch (the `torch` extra)")

SQUARE = {"x": {"min": 0.0, "max": 1.0}, "y": {"min": 0.0, "max": 1.0}}


def spec_for(parameters=SQUARE, seed=3):
    return parse_spec(
        {
            "method": "bayes",
            "metric": {"name": "val_loss"},
            "parameters": parameters,
            "seed": seed,
            "trial": {"hypermodel": "m:f", "data": "m:g"},
        }
    )


def bowl(config):
    """Best at (0.7, 0.2)."""
    return (config["x"] - 0.7) ** 2 + (config["y"] - 0.2) ** 2


def completed(number, config, value):
    return TrialRecord(
        number,
        config,
        "completed",
        objective=value,
        history=[{"step": 1, "metrics": {"val_loss": value}}],
    )


def run_one_at_a_time(search, trials):
    records = []
    for number in range(trials):
        config = search.suggest(number, records)
        records.append(completed(number, config, bowl(config)))
        search.observe(copy.deepcopy(records[-1]))
    return records


def test_bayes_runs_optunas_gaussian_process_where_pytorch_is_installed():
    search = make_search_method(spec_for())
    assert isinstance(search, GaussianProcessSearch)
    assert not isinstance(search, KerasTunerBayesSearch)
    assert isinstance(search.study_for(0, []).sampler, optuna.samplers.GPSampler)


def test_random_start_is_max_of_5_and_twice_the_searched_dimensions():
    assert make_search_method(spec_for()).startup_trials == 5
    six = {f"x{i}": {"min": 0.0, "max": 1.0} for i in range(6)}
    assert make_search_method(spec_for(six)).startup_trials == 12
    with_constant = {**SQUARE, "units": {"value": 32}}
    assert make_search_method(spec_for(with_constant)).startup_trials == 5


def test_after_its_random_start_it_suggests_near_the_optimum():
    records = run_one_at_a_time(make_search_method(spec_for()), 15)
    fitted = records[5:]  # the first 5 are random
    near = [
        r
        for r in fitted
        if math.dist((r.hyperparameters["x"], r.hyperparameters["y"]), (0.7, 0.2)) < 0.2
    ]
    assert len(near) >= 7, [r.hyperparameters for r in fitted]
    assert min(r.objective for r in records) < 0.005


def test_running_trials_are_in_the_study_so_parallel_trials_differ():
    search = make_search_method(spec_for())
    records = run_one_at_a_time(search, 8)
    first = search.suggest(8, records)
    records.append(TrialRecord(8, first, "running"))
    study = search.study_for(9, records)
    running = study.get_trials(states=[optuna.trial.TrialState.RUNNING])
    assert len(running) == 1
    # Knowing trial 8 runs there, the batch acquisition places trial 9 elsewhere; without it,
    # the process would suggest about the same point again.
    beside = search.suggest(9, records)
    alone = search.suggest(9, records[:8])
    assert math.dist(alone.values(), first.values()) < 0.05
    assert math.dist(beside.values(), first.values()) > math.dist(alone.values(), first.values())


@pytest.mark.parametrize("restart_after", [3, 7, 12])
def test_restored_after_a_restart_it_suggests_exactly_what_it_would_have(restart_after):
    spec = spec_for(SPACE)
    sweep = ScriptedSweep(parallelism=2, fail_every=5)
    uninterrupted = make_search_method(spec)
    sweep.run(restart_after, uninterrupted)
    restored = sweep.restored(spec)
    sweep.run(18, uninterrupted, restored)  # asserts both suggest the same
    assert len(sweep.records) == 18


def test_prior_trials_replace_its_random_start():
    spec = spec_for()
    priors = []
    for number in range(12):  # a grid of trials, the best of them near (0.7, 0.2)
        config = {"x": (number % 4) / 3, "y": (number // 4) / 2}
        priors.append(TrialRecord(number, config, "completed", metrics={"val_loss": bowl(config)}))
    warm = make_search_method(spec)
    assert warm_start(warm, spec, priors).told == 12
    first = [warm.suggest(0, [])]
    assert math.dist(first[0].values(), (0.7, 0.2)) < 0.25
    cold = make_search_method(spec)
    assert cold.suggest(0, []) != first[0]
