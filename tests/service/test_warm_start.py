"""Warm starts: a sweep's search method learns earlier sweeps' completed trials
(`prior_sweeps`) before its first suggestion, and they count toward nothing else."""

from __future__ import annotations

import copy
import random
import uuid
from datetime import timedelta

import pytest

from ktsweep.service.db import make_engine, make_sessions, migrate
from ktsweep.service.models import Sweep, Trial, TrialReport
from ktsweep.service.search import TrialRecord, make_search_method
from ktsweep.service.search.warm_start import (
    config_in_space,
    missing_prior_sweeps,
    prior_records,
    warm_start,
)
from ktsweep.service.spec import MAX_PRIOR_SWEEPS, SpecError, parse_spec
from tests.service.helpers import controller, database_at_revision
from tests.service.scripted_sweep import START, ScriptedSweep, keras_tuner_bayes

SQUARE = {"x": {"min": 0.0, "max": 1.0}, "y": {"min": 0.0, "max": 1.0}}
TWO_OBJECTIVES = [{"name": "a", "goal": "minimize"}, {"name": "b", "goal": "minimize"}]


def spec_for(method, parameters=SQUARE, seed=3, **extra):
    spec = {
        "method": method,
        "parameters": parameters,
        "seed": seed,
        "trial": {"hypermodel": "m:f", "data": "m:g"},
        **extra,
    }
    if method == "custom":
        spec["scheduler"] = {"engine": "optuna"}
    if "metrics" not in spec:
        spec["metric"] = {"name": "val_loss"}
    return parse_spec(spec)


def corner_priors(seed=0, count=20):
    """`count` trials, half good ones in the corner x, y < 0.1 and half bad ones away from it."""
    rng = random.Random(seed)
    priors = []
    for number in range(count):
        good = number < count // 2
        low, high = (0.0, 0.1) if good else (0.3, 1.0)
        config = {"x": rng.uniform(low, high), "y": rng.uniform(low, high)}
        value = (0.0 if good else 1.0) + config["x"] + config["y"]
        priors.append(TrialRecord(number, config, "completed", metrics={"val_loss": value}))
    return priors


def near_corner(configs):
    return sum(config["x"] + config["y"] < 0.5 for config in configs)


@pytest.mark.parametrize("method", ["tpe", "custom"])
def test_optuna_methods_told_good_corner_trials_suggest_near_that_corner_from_the_start(method):
    spec = spec_for(method)
    cold = make_search_method(spec)
    warm = make_search_method(spec)
    report = warm_start(warm, spec, corner_priors())
    assert report.told == 20
    # Cold, TPE's first 10 trials are random; warm, the 20 prior trials are its random start.
    cold_configs = [cold.suggest(number, []) for number in range(8)]
    warm_configs = [warm.suggest(number, []) for number in range(8)]
    assert near_corner(warm_configs) == 8
    assert near_corner(cold_configs) <= 2


def test_bayes_fits_its_process_to_the_prior_trials_before_its_first_suggestion():
    spec = spec_for("bayes")
    warm = keras_tuner_bayes(spec)
    warm_start(warm, spec, corner_priors())
    first = warm.suggest(0, [])
    # 20 prior trials exceed the oracle's random start (3 per dimension): its first trial
    # already comes from the Gaussian process, fitted to them.
    assert warm.oracle.gpr.X_train_.shape == (20, 2)
    assert near_corner([first]) == 1
    cold = keras_tuner_bayes(spec)
    cold.suggest(0, [])
    assert not hasattr(cold.oracle.gpr, "X_train_")


def test_nsga2_breeds_its_first_trials_from_a_generation_of_prior_trials():
    spec = spec_for("custom", metrics=TWO_OBJECTIVES)
    rng = random.Random(1)
    priors = []
    for number in range(50):  # one generation (population 50), all with x < 0.2
        config = {"x": rng.uniform(0.0, 0.2), "y": rng.uniform(0.0, 1.0)}
        metrics = {"a": config["x"], "b": 1 - config["x"] + config["y"]}
        priors.append(TrialRecord(number, config, "completed", metrics=metrics))
    cold = make_search_method(spec)
    warm = make_search_method(spec)
    assert warm_start(warm, spec, priors).told == 50
    cold_x = [cold.suggest(number, [])["x"] for number in range(10)]
    warm_x = [warm.suggest(number, [])["x"] for number in range(10)]
    assert sum(x < 0.3 for x in warm_x) >= 7
    assert sum(x < 0.3 for x in cold_x) <= 5


def test_prior_trials_outside_the_new_space_are_skipped_and_counted():
    spec = spec_for(
        "tpe",
        {"lr": {"min": 0.001, "max": 0.1}, "units": {"values": [16, 32]}, "seed": {"value": 7}},
    )
    metrics = {"val_loss": 0.5}
    priors = [
        TrialRecord(0, {"lr": 0.01, "units": 16, "seed": 7}, "completed", metrics=metrics),
        # A parameter the new space lacks is dropped; a constant it lacks takes its value.
        TrialRecord(1, {"lr": 0.02, "units": 32, "dropout": 0.1}, "completed", metrics=metrics),
        TrialRecord(2, {"lr": 0.5, "units": 16}, "completed", metrics=metrics),  # lr too high
        TrialRecord(3, {"lr": 0.01, "units": 64}, "completed", metrics=metrics),  # not a value
        TrialRecord(4, {"units": 16}, "completed", metrics=metrics),  # no lr
        TrialRecord(5, {"lr": 0.01, "units": 16, "seed": 8}, "completed", metrics=metrics),
        TrialRecord(6, {"lr": 0.01, "units": 16}, "completed", metrics={"loss": 0.1}),
        TrialRecord(7, {"lr": 0.01, "units": 16}, "failed", metrics={}),  # not completed
    ]
    method = make_search_method(spec)
    report = warm_start(method, spec, priors)
    assert (report.told, report.skipped_outside_space, report.skipped_without_objective) == (
        2,
        4,
        1,
    )
    assert [trial.params for trial in method._prior] == [
        {"lr": pytest.approx(method.space.coordinates({"lr": 0.01})["lr"]), "units": 0},
        {"lr": pytest.approx(method.space.coordinates({"lr": 0.02})["lr"]), "units": 1},
    ]


def test_values_are_matched_by_name_in_nested_parameters():
    spec = spec_for(
        "tpe", {"optimizer": {"parameters": {"lr": {"min": 0.0, "max": 1.0}}}, "x": SQUARE["x"]}
    )
    space = make_search_method(spec).space
    assert config_in_space(space, {"x": 0.5, "optimizer": {"lr": 0.2, "beta": 0.9}}) == {
        "optimizer": {"lr": 0.2},
        "x": 0.5,
    }
    assert config_in_space(space, {"x": 0.5, "lr": 0.2}) is None  # not the nested one


def test_integers_off_the_new_range_or_grid_are_outside_the_space():
    spec = spec_for(
        "tpe",
        {
            "units": {"min": 8, "max": 64},
            "q": {"distribution": "q_uniform", "min": 0, "max": 1, "q": 0.25},
        },
    )
    space = make_search_method(spec).space
    assert config_in_space(space, {"units": 8, "q": 0.75}) is not None
    assert config_in_space(space, {"units": 65, "q": 0.75}) is None
    assert config_in_space(space, {"units": 8.5, "q": 0.75}) is None
    assert config_in_space(space, {"units": 8, "q": 0.3}) is None
    assert config_in_space(space, {"units": True, "q": 0.75}) is None


def test_prior_trials_count_toward_nothing_but_what_the_method_learns():
    spec = spec_for(
        "tpe",
        early_terminate={"type": "median", "n_warmup_steps": 0},
        metric={"name": "val_loss", "impute": "best"},
    )
    method = make_search_method(spec)
    warm_start(method, spec, corner_priors())
    assert method.finished == {}
    # A failed trial of the new sweep, before any of its own finished: nothing to impute,
    # although the prior trials have values.
    assert method.objective_for(TrialRecord(0, {"x": 0.5, "y": 0.5}, "failed")) is None
    # The median rule compares a running trial with the sweep's own trials only.
    running = TrialRecord(
        0,
        {"x": 0.9, "y": 0.9},
        "running",
        history=[{"step": 1, "metrics": {"val_loss": 50.0}}],
    )
    assert not method.should_stop(running, [running])


@pytest.mark.parametrize(
    "spec",
    [
        spec_for("tpe"),
        spec_for("custom", metrics=[{"name": "val_loss"}, {"name": "x_cost"}]),
    ],
    ids=["tpe", "custom-two-objectives"],
)
def test_a_warm_started_method_restored_after_a_restart_suggests_what_it_would_have(spec):
    # 60 prior trials: more than a generation of NSGA-II (50), so it breeds from them.
    priors = corner_priors(count=60)
    for record in priors:
        record.metrics["x_cost"] = record.hyperparameters["x"]
    sweep = ScriptedSweep(parallelism=2)
    uninterrupted = make_search_method(spec)
    warm_start(uninterrupted, spec, priors)
    sweep.run(6, uninterrupted)
    restored = make_search_method(spec)
    warm_start(restored, spec, priors)
    restored.restore(copy.deepcopy(sweep.records))
    sweep.run(12, uninterrupted, restored)  # asserts both suggest the same
    assert len(sweep.records) == 12


def test_warm_started_bayes_restored_after_a_restart_fits_the_same_trials():
    spec = spec_for("bayes")
    priors = corner_priors()
    sweep = ScriptedSweep(parallelism=1)
    uninterrupted = keras_tuner_bayes(spec)
    warm_start(uninterrupted, spec, priors)
    sweep.run(4, uninterrupted)
    sweep.end_oldest(uninterrupted)
    restored = keras_tuner_bayes(spec)
    warm_start(restored, spec, priors)
    restored.restore(copy.deepcopy(sweep.records))

    def fitted(method):
        return [
            (trial.status, trial.score, trial.hyperparameters.values)
            for trial in method.oracle.trials.values()
        ]

    assert fitted(restored) == fitted(uninterrupted)
    suggestion = restored.suggest(4, sweep.records)
    # Keras Tuner's process restarts its optimiser at random points: close, not equal.
    assert restored.oracle.gpr.X_train_.shape == (24, 2)
    expected = uninterrupted.suggest(4, sweep.records)
    assert abs(suggestion["x"] - expected["x"]) < 0.05
    assert abs(suggestion["y"] - expected["y"]) < 0.05


@pytest.mark.parametrize("method", ["tpe", "bayes", "custom"])
def test_prior_trials_come_too_late_after_the_first_suggestion(method):
    spec = spec_for(method)
    search = make_search_method(spec)
    search.suggest(0, [])
    with pytest.raises(RuntimeError, match="before its first suggestion"):
        warm_start(search, spec, corner_priors())


def test_random_search_takes_prior_trials_and_draws_as_before():
    spec = spec_for("random")
    cold, warm = make_search_method(spec), make_search_method(spec)
    assert warm_start(warm, spec, corner_priors()).told == 20
    assert [warm.suggest(n, []) for n in range(5)] == [cold.suggest(n, []) for n in range(5)]


def spec_problems(**fields):
    with pytest.raises(SpecError) as caught:
        spec_for(**fields)
    return {(problem.path, problem.message) for problem in caught.value.problems}


def test_prior_sweeps_are_a_short_list_of_distinct_sweep_ids():
    assert spec_for("tpe", prior_sweeps=["3f2a9c1b7d4e", "a1"]).prior_sweeps == [
        "3f2a9c1b7d4e",
        "a1",
    ]
    too_many = [f"sweep{index}" for index in range(MAX_PRIOR_SWEEPS + 1)]
    ((path, message),) = spec_problems(method="tpe", prior_sweeps=too_many)
    assert path == "prior_sweeps" and f"at most {MAX_PRIOR_SWEEPS}" in message
    problems = spec_problems(method="tpe", prior_sweeps=["ok", "no spaces", 7, "ok"])
    assert {path for path, _ in problems} == {"prior_sweeps.1", "prior_sweeps.2", "prior_sweeps.3"}
    assert any("listed twice" in message for _, message in problems)


@pytest.mark.parametrize("method", ["grid", "hyperband"])
def test_methods_that_learn_nothing_from_results_refuse_prior_sweeps(method):
    parameters = {"x": {"values": [1, 2]}}
    extra = {"hyperband": {}} if method == "hyperband" else {}
    with pytest.raises(SpecError) as caught:
        parse_spec(
            {
                "method": method,
                "metric": {"name": "val_loss"},
                "parameters": parameters,
                "prior_sweeps": ["abc"],
                "trial": {"hypermodel": "m:f", "data": "m:g", "fit": {"epochs": 9}},
                **extra,
            }
        )
    assert any(
        problem.path == "prior_sweeps" and f"method '{method}'" in problem.message
        for problem in caught.value.problems
    )


def stored_sweeps(database_url):
    """Two finished sweeps: `a` with 3 completed trials (one reporting its metric only in
    its reports) and a failed one, `b` with 2 completed trials."""
    engine = make_engine(database_url)
    migrate(engine)
    sessions = make_sessions(engine)
    ids = {"a": uuid.uuid4().hex[:12], "b": uuid.uuid4().hex[:12]}
    with sessions() as session:
        for key, sweep_id in ids.items():
            session.add(Sweep(id=sweep_id, name=key, state="finished", spec={"method": "tpe"}))
        session.flush()
        rows = [("a", 0, "completed"), ("a", 1, "failed"), ("a", 2, "completed")]
        rows += [("a", 3, "completed"), ("b", 0, "completed"), ("b", 1, "completed")]
        for order, (key, number, state) in enumerate(rows):
            trial_id = f"{ids[key]}-{number}"
            reported_only = (key, number) == ("a", 3)
            session.add(
                Trial(
                    id=trial_id,
                    sweep_id=ids[key],
                    number=number,
                    state=state,
                    hyperparameters={"x": 0.1 * (order + 1), "y": 0.5},
                    metrics={} if reported_only else {"val_loss": float(order)},
                    objective=float(order),
                    finished_at=START + timedelta(minutes=order),
                )
            )
            session.flush()
            for step in (1, 2):
                session.add(
                    TrialReport(
                        trial_id=trial_id, step=step, metrics={"val_loss": order + step / 10}
                    )
                )
        session.commit()
    return sessions, ids


def test_prior_records_are_the_completed_trials_with_their_reports(database_url):
    sessions, ids = stored_sweeps(database_url)
    with sessions() as session:
        records = prior_records(session, [ids["a"], ids["b"]])
        latest = prior_records(session, [ids["a"], ids["b"]], limit=2)
        before = prior_records(
            session, [ids["a"], ids["b"]], finished_before=START + timedelta(minutes=3)
        )
    assert [(r.number, r.state) for r in records] == [
        (0, "completed"),
        (2, "completed"),
        (3, "completed"),
        (0, "completed"),
        (1, "completed"),
    ]
    assert [entry["step"] for entry in records[2].history] == [1, 2]
    # Trials that ended after the new sweep was made are left out (a restart sees the same).
    assert [(r.number, r.finished_at) for r in before] == [
        (0, START),
        (2, START + timedelta(minutes=2)),
    ]
    assert [r.hyperparameters["x"] for r in latest] == [
        pytest.approx(0.5),
        pytest.approx(0.6),
    ]
    spec = spec_for("tpe")
    method = make_search_method(spec)
    report = warm_start(method, spec, records)
    assert report.told == 5  # trial a-3 counts with its last reported value
    assert method._prior[2].value == pytest.approx(3.2)


def test_a_prior_sweep_that_does_not_exist_is_a_problem_at_its_index(database_url):
    sessions, ids = stored_sweeps(database_url)
    spec = spec_for("tpe", prior_sweeps=[ids["a"], "0123456789ab", ids["b"]])
    with sessions() as session:
        problems = missing_prior_sweeps(session, spec)
        assert missing_prior_sweeps(session, spec_for("tpe", prior_sweeps=[ids["b"]])) == []
    assert [
        (problem.path, "no sweep '0123456789ab'" in problem.message) for problem in problems
    ] == [("prior_sweeps.1", True)]


def test_a_database_from_before_warm_start_reports_upgrades_with_none(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'old.sqlite'}")
    with database_at_revision(engine, "0002"):
        pass  # the old sweep alone

    migrate(engine)

    with make_sessions(engine)() as session:
        sweep = session.get(Sweep, "s1")
        assert (sweep.name, sweep.warm_start) == ("old", None)
        sweep.warm_start = {"prior_sweeps": ["p"], "learned": 1}
        session.commit()
    with make_sessions(engine)() as session:
        assert session.get(Sweep, "s1").warm_start == {"prior_sweeps": ["p"], "learned": 1}


def test_the_scheduler_stores_what_the_warm_start_learned_for_the_api(database_url, tmp_path):
    sessions, ids = stored_sweeps(database_url)
    spec = {
        "method": "tpe",
        "metric": {"name": "val_loss", "goal": "minimize"},
        # Of the five completed prior trials (x = 0.1, 0.3, 0.4, 0.5, 0.6), two lie in it.
        "parameters": {"x": {"min": 0.0, "max": 0.35}, "y": {"min": 0.0, "max": 1.0}},
        "prior_sweeps": [ids["a"], ids["b"]],
        "trial": {"hypermodel": "m:f", "data": "m:g"},
    }
    with sessions() as session:
        # Paused: the scheduler's own passes leave it alone.
        session.add(Sweep(id="warm", name="warm", state="paused", spec=spec))
        session.commit()
    with controller(database_url, tmp_path) as api:
        assert api.get("/api/v1/sweeps/warm").json()["warm_start"] is None
        scheduler = api.app_state.scheduler
        with api.app_state.sessions() as session:
            scheduler.method_for(session.get(Sweep, "warm"))
        scheduler.schedule_pending_trials()  # a pass stores the report

        shown = api.get("/api/v1/sweeps/warm").json()["warm_start"]
    assert shown == {
        "prior_sweeps": [ids["a"], ids["b"]],
        "learned": 2,
        "skipped_outside_space": 3,
        "skipped_without_objective": 0,
    }
