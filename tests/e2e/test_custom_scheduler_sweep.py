"""Digits sweeps whose trials come from the user's own Optuna code (`scheduler: {engine:
optuna, source, optimizer, search_space}`) and from Ax (`scheduler: {engine: ax}`), through a
real `ktsweep serve` and real Ray."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from ktsweep.client import ApiError
from ktsweep.service.spec import SpecError, parse_spec

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "optuna_scheduler" / "sweep.yaml"


def custom_scheduler_spec(**scheduler_changes) -> dict:
    spec = yaml.safe_load(EXAMPLE.read_text())
    spec.update(name="digits-optuna-code", run_cap=3, parallelism=2)
    spec["trial"]["fit"]["epochs"] = 1
    spec["scheduler"].update(scheduler_changes)
    return spec


def _spec_refuses_user_code() -> bool:
    try:
        parse_spec(custom_scheduler_spec())
    except SpecError as exc:
        return any(problem.path.startswith("scheduler.") for problem in exc.problems)
    return False


needs_user_code = pytest.mark.skipif(
    _spec_refuses_user_code(),
    reason="spec refuses user code until spec.py lifts its `scheduler.source` refusal and the "
    "submit route calls check_scheduler_code",
)


@needs_user_code
def test_a_sweep_runs_the_users_sampler_and_search_space(client):
    sweep = client.submit(custom_scheduler_spec())
    final = client.wait(sweep["id"], timeout_s=600)

    assert final["state"] == "finished", final
    assert final["trial_counts"]["completed"] == 3
    trials = client.trials(sweep["id"])
    configs = [trial["hyperparameters"] for trial in trials]
    for config in configs:
        # What examples/optuna_scheduler/study.py's `search_space` suggests, and nothing else.
        assert set(config) == {"units", "dropout", "learning_rate"}
        assert config["units"] in range(16, 129, 16)
        assert 0.0 <= config["dropout"] <= 0.5
        assert 1e-3 <= config["learning_rate"] <= 3e-2
    assert len({config["learning_rate"] for config in configs}) == 3
    for trial in trials:
        assert 0.0 <= trial["metrics"]["val_accuracy"] <= 1.0
    assert final["best_trial"] is not None


@needs_user_code
@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"source": "../outside.py"}, "scheduler.source"),
        ({"source": "README.md"}, "scheduler.source"),
        ({"optimizer": "no_such_function"}, "scheduler.optimizer"),
        ({"search_space": "optuna.create_study"}, "scheduler.search_space"),
    ],
)
def test_scheduler_code_problems_are_422_with_their_path(client, changes, path):
    with pytest.raises(ApiError) as answer:
        client.submit(custom_scheduler_spec(**changes))
    assert answer.value.status_code == 422
    assert path in {problem["path"] for problem in answer.value.detail}


DIGITS = REPO / "examples" / "digits" / "sweep.yaml"


def ax_spec() -> dict:
    spec = yaml.safe_load(DIGITS.read_text())
    spec.update(
        name="digits-ax", method="custom", scheduler={"engine": "ax"}, run_cap=3, parallelism=2
    )
    spec["trial"]["fit"]["epochs"] = 1
    return spec


def _spec_refuses_ax() -> bool:
    try:
        parse_spec(ax_spec())
    except SpecError:
        return True
    return False


@pytest.mark.skipif(
    importlib.util.find_spec("ax") is None,
    reason="engine 'ax' needs the Ax platform: pip install 'ktsweep[ax]'",
)
@pytest.mark.skipif(
    _spec_refuses_ax(), reason="spec refuses engine 'ax' until spec.py lifts its refusal"
)
def test_an_ax_sweep_searches_the_spec_parameters(client):
    sweep = client.submit(ax_spec())
    final = client.wait(sweep["id"], timeout_s=600)

    assert final["state"] == "finished", final
    assert final["trial_counts"]["completed"] == 3
    for trial in client.trials(sweep["id"]):
        config = trial["hyperparameters"]
        assert config["units"] in (32, 64, 128)
        assert 0.0 <= config["dropout"] <= 0.5
        assert 1e-3 <= config["learning_rate"] <= 3e-2
