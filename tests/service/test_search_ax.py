"""`method: custom` with `scheduler: {engine: ax}`: a real Ax experiment (the `ax` extra)."""

from __future__ import annotations

import copy
import importlib.util

import pytest

from ktsweep.service.search import TrialRecord, make_search_method
from ktsweep.service.spec import SchedulerSpec, parse_spec
from tests.service.scripted_sweep import SPACE, START, ScriptedSweep

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ax") is None,
    reason="engine 'ax' needs the Ax platform: pip install 'ktsweep[ax]'",
)


def spec_for(objectives=None, parameters=SPACE, seed=5):
    """A parsed `method: custom` spec with `scheduler: {engine: ax}` put in after parsing."""
    spec = {
        "method": "custom",
        "scheduler": {"engine": "optuna"},
        "parameters": parameters,
        "seed": seed,
        "trial": {"hypermodel": "m:f", "data": "m:g"},
    }
    if objectives is None:
        spec["metric"] = {"name": "val_loss", "goal": "minimize"}
    else:
        spec["metrics"] = objectives
    return parse_spec(spec).model_copy(update={"scheduler": SchedulerSpec(engine="ax")})


def test_ax_searches_the_spec_parameters_and_learns_each_trial():
    from ktsweep.service.search.ax_search import AxSearch

    search = make_search_method(spec_for())
    assert isinstance(search, AxSearch)
    sweep = ScriptedSweep(parallelism=2, fail_every=4)
    sweep.run(7, search)
    for record in sweep.records:
        assert 0.0 <= record.hyperparameters["x"] <= 1.0
        assert record.hyperparameters["c"] in ("good", "bad")
    statuses = search.client.summarize()["trial_status"].tolist()
    ended = [r.state for r in sweep.records if r.state != "running"]
    assert statuses.count("COMPLETED") == ended.count("completed")
    assert statuses.count("FAILED") == ended.count("failed") > 0
    assert statuses.count("RUNNING") == len(sweep.running)


def test_restore_attaches_the_stored_trials_where_they_lay():
    spec = spec_for()
    sweep = ScriptedSweep(parallelism=2)
    sweep.run(5, make_search_method(spec))
    restored = sweep.restored(spec)
    best, *_ = restored.client.get_best_parameterization(use_model_predictions=False)
    completed = [r for r in sweep.records if r.state == "completed"]
    expected = min(completed, key=lambda r: r.objective).hyperparameters
    assert best["p0"] == pytest.approx(expected["x"])
    assert best["p1"] == ["good", "bad"].index(expected["c"])
    # A trial still running when the controller stopped is completed when it ends.
    running = copy.deepcopy(sweep.running[0])
    running.state, running.objective, running.finished_at = "completed", -1.0, START
    restored.observe(running)
    best, *_ = restored.client.get_best_parameterization(use_model_predictions=False)
    assert best["p0"] == pytest.approx(running.hyperparameters["x"])
    assert restored.suggest(len(sweep.records), sweep.records) is not None


def test_several_objectives_make_a_pareto_front():
    objectives = [
        {"name": "val_loss", "goal": "minimize"},
        {"name": "model/parameters", "goal": "maximize"},
    ]
    search = make_search_method(spec_for(objectives))
    records = []
    for number in range(4):
        config = search.suggest(number, records)
        x = config["x"]
        record = TrialRecord(number, config, "completed", finished_at=START)
        record.metrics = {"val_loss": x, "model/parameters": x}  # every trial on the front
        records.append(record)
        search.observe(record)
    front = search.client.get_pareto_frontier(use_model_predictions=False)
    assert sorted(point[0]["p0"] for point in front) == sorted(
        r.hyperparameters["x"] for r in records
    )


def test_ax_waits_for_running_trials_when_it_needs_their_data():
    search = make_search_method(spec_for())
    records = []
    while (config := search.suggest(len(records), records)) is not None:
        records.append(TrialRecord(len(records), config, "running"))
        assert len(records) < 50
    assert search.is_waiting(records)
    for record in records:  # once they have data, Ax goes on
        record.state, record.objective, record.finished_at = "completed", 0.5, START
        search.observe(record)
    assert search.suggest(len(records), records) is not None


def test_a_warm_start_completes_the_prior_trials_in_the_experiment_first():
    from ktsweep.service.search.warm_start import warm_start

    spec = spec_for()
    search = make_search_method(spec)
    prior = [
        TrialRecord(0, {"x": 0.25, "c": "good"}, "completed", metrics={"val_loss": 0.1}),
        TrialRecord(1, {"x": 0.75, "c": "bad"}, "completed", metrics={"val_loss": 0.9}),
        TrialRecord(2, {"x": 7.0, "c": "good"}, "completed", metrics={"val_loss": 0.5}),
    ]
    report = warm_start(search, spec, prior)

    assert (report.told, report.skipped_outside_space) == (2, 1)
    best, *_ = search.client.get_best_parameterization(use_model_predictions=False)
    assert (best["p0"], best["p1"]) == (pytest.approx(0.25), 0)
    assert search.suggest(0, []) is not None
    statuses = search.client.summarize()["trial_status"].tolist()
    assert statuses == ["COMPLETED", "COMPLETED", "RUNNING"]
