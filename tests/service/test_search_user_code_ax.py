"""`scheduler: {engine: ax, source, optimizer, search_space}`: the user's Ax code, run in a
child process of the sweep's own, with a real Ax client (the `ax` extra)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from ktsweep.service.search import TrialRecord, make_search_method
from ktsweep.service.search.user_code import UserCodeError
from ktsweep.service.search.user_code_search import UserCodeSearch, check_scheduler_code
from ktsweep.service.search.warm_start import warm_start
from ktsweep.service.spec import SchedulerSpec, parse_spec
from tests.service.scripted_sweep import SPACE, START
from tests.service.test_search_user_code import settings_for

pytest.importorskip("ax")

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "ax_scheduler" / "client.py"

# Scheduler code for these tests. `Counting` is an Ax client that adds to each suggestion how
# many trials of its experiment are completed and failed: what it suggests shows what it learned.
SOURCE = """
from ax import ChoiceParameterConfig, Client, RangeParameterConfig


class Counting(Client):
    def get_next_trials(self, max_trials, fixed_parameters=None):
        made = super().get_next_trials(max_trials, fixed_parameters)
        statuses = self.summarize()["trial_status"].tolist()
        counts = {"completed": statuses.count("COMPLETED"), "failed": statuses.count("FAILED")}
        return {index: {**parameters, **counts} for index, parameters in made.items()}


def counting():
    return Counting(random_seed=11)


def space():
    return [
        RangeParameterConfig(name="x", bounds=(0.0, 1.0), parameter_type="float"),
        ChoiceParameterConfig(name="c", values=["good", "bad"], parameter_type="str"),
    ]


def configured():
    client = Client()
    client.configure_experiment(parameters=space())
    return client


def not_a_client():
    return 42


def not_parameters():
    return {"x": (0.0, 1.0)}


def takes_a_trial(trial):
    return space()
"""


@pytest.fixture
def source(tmp_path, monkeypatch) -> Path:
    """The test's scheduler code, in a folder the controller allows code to run from."""
    path = tmp_path / "ax_code.py"
    path.write_text(SOURCE)
    monkeypatch.setenv("KTSWEEP_ALLOWED_PROGRAM_DIRS", str(tmp_path))
    return path


def spec_for(source, optimizer=None, search_space=None, **extra):
    """A parsed `method: custom` spec with its Ax `scheduler` code put in after parsing."""
    spec = {
        "method": "custom",
        "scheduler": {"engine": "optuna"},
        "seed": 5,
        "metric": {"name": "val_loss", "goal": "minimize"},
        "trial": {"hypermodel": "m:f", "data": "m:g"},
        **extra,
    }
    if search_space is None:
        spec.setdefault("parameters", SPACE)
    scheduler = SchedulerSpec(
        engine="ax", source=str(source), optimizer=optimizer, search_space=search_space
    )
    return parse_spec(spec).model_copy(update={"scheduler": scheduler})


def finish(record: TrialRecord, value: float | None, state: str = "completed") -> TrialRecord:
    record.state = state
    if value is not None:
        record.objective = value
        record.metrics = {"val_loss": value}
    record.finished_at = START
    return record


def test_the_users_client_suggests_in_the_users_space_and_learns_each_trial(source):
    search = make_search_method(spec_for(source, optimizer="counting", search_space="space"))
    assert isinstance(search, UserCodeSearch)
    try:
        records = [TrialRecord(n, search.suggest(n, []), "running") for n in range(3)]
        search.observe(finish(records[0], 0.4))
        search.observe(finish(records[1], None, state="failed"))
        following = search.suggest(3, records)
    finally:
        search.close()
    for record in records:
        assert 0.0 <= record.hyperparameters["x"] <= 1.0
        assert record.hyperparameters["c"] in ("good", "bad")
    assert records[0].hyperparameters["completed"] == 0
    assert (following["completed"], following["failed"]) == (1, 1)


def test_the_example_client_searches_the_digits_model(tmp_path):
    spec = spec_for(EXAMPLE, optimizer="optimizer", search_space="search_space")
    assert check_scheduler_code(spec, settings_for(REPO, tmp_path)) == []
    search = make_search_method(spec)
    try:
        config = search.suggest(0, [])
    finally:
        search.close()
    assert set(config) == {"units", "dropout", "learning_rate"}
    assert config["units"] in (16, 32, 64, 128)
    assert 1e-3 <= config["learning_rate"] <= 3e-2


def test_restore_attaches_the_stored_trials_to_a_new_client(source):
    spec = spec_for(source, optimizer="counting", search_space="space")
    search = make_search_method(spec)
    try:
        records = [TrialRecord(n, search.suggest(n, []), "running") for n in range(3)]
    finally:
        search.close()
    finish(records[0], 0.2)
    finish(records[1], None, state="failed")

    restored = make_search_method(spec)
    try:
        restored.restore(copy.deepcopy(records))
        after_restart = restored.suggest(3, records)
        # The trial still running when the controller stopped is told when it ends.
        restored.observe(finish(copy.deepcopy(records[2]), 0.1))
        after_it_ended = restored.suggest(4, records)
    finally:
        restored.close()
    assert (after_restart["completed"], after_restart["failed"]) == (1, 1)
    assert (after_it_ended["completed"], after_it_ended["failed"]) == (2, 1)


def test_without_search_space_the_client_searches_the_spec_parameters(source):
    spec = spec_for(source, optimizer="counting")
    search = make_search_method(spec)
    prior = [
        TrialRecord(0, {"x": 0.25, "c": "good"}, "completed", metrics={"val_loss": 0.1}),
        TrialRecord(1, {"x": 0.75, "c": "bad"}, "completed", metrics={"val_loss": 0.9}),
        TrialRecord(2, {"x": 7.0, "c": "good"}, "completed", metrics={"val_loss": 0.5}),
    ]
    try:
        report = warm_start(search, spec, prior)
        config = search.suggest(0, [])
    finally:
        search.close()
    assert (report.told, report.skipped_outside_space) == (2, 1)
    assert set(config) == {"x", "c"}  # the spec's parameters; the counts are not among them
    assert 0.0 <= config["x"] <= 1.0 and config["c"] in ("good", "bad")


@pytest.mark.parametrize(
    ("optimizer", "search_space", "message"),
    [
        ("not_a_client", "space", "returned int; return an `ax.Client`"),
        ("configured", "space", "already has an experiment"),
        ("counting", "not_parameters", "returned dict; return a list of Ax parameter configs"),
    ],
)
def test_code_that_gives_what_the_sweep_cannot_use_says_why(
    source, optimizer, search_space, message
):
    search = make_search_method(spec_for(source, optimizer=optimizer, search_space=search_space))
    try:
        with pytest.raises(UserCodeError, match=message):
            search.suggest(0, [])
    finally:
        search.close()


def test_check_accepts_ax_code_and_says_what_is_wrong_with_its_names(source, tmp_path):
    settings = settings_for(source.parent, tmp_path)
    assert check_scheduler_code(spec_for(source, "counting", "space"), settings) == []
    problems = check_scheduler_code(spec_for(source, "counting", "takes_a_trial"), settings)
    assert [(p.path, "no arguments" in p.message) for p in problems] == [
        ("scheduler.search_space", True)
    ]
