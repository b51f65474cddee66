"""`scheduler: {engine: optuna, source, optimizer, search_space}`: the user's Optuna code, run
in a child process of the sweep's own, with real Optuna."""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path

import pytest

from ktsweep.service.config import Settings
from ktsweep.service.search import TrialRecord, check_search_space, make_search_method
from ktsweep.service.search.user_code import UserCodeError
from ktsweep.service.search.user_code_search import UserCodeSearch, check_scheduler_code
from ktsweep.service.spec import SchedulerSpec, parse_spec
from tests.service.scripted_sweep import SPACE, START, ScriptedSweep

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "optuna_scheduler" / "study.py"

# Scheduler code for these tests. `Counting` suggests, for `completed` and `failed`, how many
# trials of each state its study holds, and for `best`, its best value so far (0 without one):
# what it suggests shows what the study has learned.
SOURCE = """
import os
import time

import optuna


def tpe():
    return optuna.samplers.TPESampler(n_startup_trials=3, seed=11)


class Counting(optuna.samplers.RandomSampler):
    def sample_independent(self, study, trial, name, distribution):
        trials = study.get_trials(deepcopy=False)
        states = optuna.trial.TrialState
        if name == "completed":
            return float(sum(t.state == states.COMPLETE for t in trials))
        if name == "failed":
            return float(sum(t.state == states.FAIL for t in trials))
        if name == "best":
            done = [t for t in trials if t.state == states.COMPLETE]
            if len(study.directions) > 1:
                return float(len(study.best_trials))
            return study.best_value if done else 0.0
        return super().sample_independent(study, trial, name, distribution)


def counting():
    return Counting(seed=3)


def counting_space(trial):
    trial.suggest_float("completed", 0, 1000)
    trial.suggest_float("failed", 0, 1000)
    trial.suggest_float("best", -1e9, 1e9)


def study_maximizing():
    return optuna.create_study(direction="maximize")


def study_minimizing():
    return optuna.create_study(direction="minimize", sampler=optuna.samplers.RandomSampler(seed=1))


def not_an_optimizer():
    return 42


def space(trial):
    units = trial.suggest_int("units", 16, 128, step=16)
    trial.suggest_float("dropout", 0.0, 0.5)
    trial.suggest_categorical("activation", ["relu", "tanh"])


def scripted(trial):
    trial.suggest_float("x", 0.0, 1.0)
    trial.suggest_categorical("c", ["good", "bad"])


def derived(trial):
    x = trial.suggest_float("x", 0.0, 1.0)
    return {"x": x, "double": 2 * x}


def secrets(trial):
    trial.suggest_float("x", 0.0, 1.0)
    secret = os.environ.get("KTSWEEP_SECRET")
    return {"secret": secret, "token": os.environ.get("KTSWEEP_API_TOKENS")}


def hang(trial):
    time.sleep(3600)


def exits(trial):
    os._exit(3)


def raises(trial):
    raise ValueError("no space today")


def two_arguments(trial, other):
    pass
"""


@pytest.fixture
def source(tmp_path, monkeypatch) -> Path:
    """The test's scheduler code, in a folder the controller allows code to run from."""
    path = tmp_path / "scheduler_code.py"
    path.write_text(SOURCE)
    monkeypatch.setenv("KTSWEEP_ALLOWED_PROGRAM_DIRS", str(tmp_path))
    return path


def spec_for(source, optimizer=None, search_space=None, metric="val_loss", **extra):
    """A parsed `method: custom` spec with its `scheduler` code put in after parsing."""
    spec = {
        "method": "custom",
        "scheduler": {"engine": "optuna"},
        "seed": 5,
        "trial": {"hypermodel": "m:f", "data": "m:g"},
        **extra,
    }
    if search_space is None:
        spec.setdefault("parameters", SPACE)
    if isinstance(metric, list):
        spec["metrics"] = metric
    else:
        spec["metric"] = {"name": metric, "goal": "minimize"}
    parsed = parse_spec(spec)
    scheduler = SchedulerSpec(
        engine="optuna", source=str(source), optimizer=optimizer, search_space=search_space
    )
    return parsed.model_copy(update={"scheduler": scheduler})


def settings_for(folder: Path, tmp_path: Path) -> Settings:
    return Settings(
        allowed_program_dirs=str(folder),
        database_url=f"sqlite:///{tmp_path / 'db' / 'ktsweep.db'}",
        artifact_dir=str(tmp_path / "artifacts"),
    )


def finish(record: TrialRecord, value: float | None, state: str = "completed") -> TrialRecord:
    record.state = state
    if value is not None:
        record.objective = value
        record.metrics = {"val_loss": value}
        record.history = [{"step": 1, "metrics": {"val_loss": value}}]
    record.finished_at = START
    return record


# --- what the study suggests -------------------------------------------------------------------


def test_search_space_and_sampler_come_from_the_users_code(source):
    search = make_search_method(spec_for(source, optimizer="tpe", search_space="space"))
    assert isinstance(search, UserCodeSearch)
    try:
        suggestions = [search.suggest(number, []) for number in range(4)]
    finally:
        search.close()
    for config in suggestions:
        assert set(config) == {"units", "dropout", "activation"}
        assert config["units"] in range(16, 129, 16)
        assert 0.0 <= config["dropout"] <= 0.5
        assert config["activation"] in ("relu", "tanh")
    assert len({config["dropout"] for config in suggestions}) == 4


def test_a_seeded_sampler_suggests_the_same_sweep_twice(source):
    spec = spec_for(source, optimizer="tpe", search_space="scripted")
    first, second = make_search_method(spec), make_search_method(spec)
    try:
        ScriptedSweep(parallelism=2, fail_every=3).run(8, first, second)  # they must agree
    finally:
        first.close()
        second.close()


def test_search_space_may_return_the_hyperparameters(source):
    search = make_search_method(spec_for(source, search_space="derived"))
    try:
        config = search.suggest(0, [])
    finally:
        search.close()
    assert config["double"] == 2 * config["x"]


def test_without_search_space_the_spec_parameters_are_the_space(source):
    search = make_search_method(spec_for(source, optimizer="tpe"))
    sweep = ScriptedSweep(parallelism=1)
    try:
        sweep.run(6, search)
    finally:
        search.close()
    for record in sweep.records:
        assert set(record.hyperparameters) == {"x", "c"}
        assert 0.0 <= record.hyperparameters["x"] <= 1.0
        assert record.hyperparameters["c"] in ("good", "bad")


def test_the_example_source_searches_the_digits_model(tmp_path):
    spec = spec_for(EXAMPLE, optimizer="optimizer", search_space="search_space")
    assert check_scheduler_code(spec, settings_for(REPO, tmp_path)) == []
    search = make_search_method(spec)
    try:
        config = search.suggest(0, [])
    finally:
        search.close()
    assert set(config) == {"units", "dropout", "learning_rate"}
    assert 1e-3 <= config["learning_rate"] <= 3e-2


# --- what the study learns ---------------------------------------------------------------------


def test_finished_trials_are_told_with_their_values_and_failures_as_failed(source):
    search = make_search_method(
        spec_for(source, optimizer="counting", search_space="counting_space")
    )
    try:
        records = [TrialRecord(n, search.suggest(n, []), "running") for n in range(3)]
        search.observe(finish(records[0], 0.7))
        search.observe(finish(records[1], None, state="failed"))
        search.observe(finish(records[2], 0.4))
        learned = search.suggest(3, records)
    finally:
        search.close()
    assert learned == {"completed": 2.0, "failed": 1.0, "best": 0.4}


def test_several_objectives_are_told_together(source):
    objectives = [{"name": "val_loss", "goal": "minimize"}, {"name": "size", "goal": "minimize"}]
    spec = spec_for(source, optimizer="counting", search_space="counting_space", metric=objectives)
    search = make_search_method(spec)
    try:
        records = [TrialRecord(n, search.suggest(n, []), "running") for n in range(3)]
        for record, (loss, size) in zip(records, [(0.1, 9.0), (0.9, 1.0), (0.5, 5.0)], strict=True):
            record.state, record.metrics, record.finished_at = (
                "completed",
                {"val_loss": loss},
                START,
            )
            record.metrics["size"] = size
            search.observe(record)
        missing = TrialRecord(3, search.suggest(3, []), "completed", metrics={"val_loss": 0.2})
        search.observe(missing)  # without `size`: told as failed
        learned = search.suggest(4, records)
    finally:
        search.close()
    # All three are on the front (each is best on one objective or between the two).
    assert learned == {"completed": 3.0, "failed": 1.0, "best": 3.0}


def test_restore_rebuilds_the_study_from_the_stored_trials(source):
    spec = spec_for(source, optimizer="counting", search_space="counting_space")
    search = make_search_method(spec)
    try:
        records = [TrialRecord(n, search.suggest(n, []), "running") for n in range(4)]
        search.observe(finish(records[0], 0.3))
        search.observe(finish(records[1], None, state="failed"))
        search.observe(finish(records[2], 0.2))
        uninterrupted = search.suggest(4, records)
    finally:
        search.close()

    restored = make_search_method(spec)
    try:
        restored.restore(copy.deepcopy(records))
        assert restored.suggest(4, records) == uninterrupted
        # The trial still running when the controller stopped is told when it ends.
        restored.observe(finish(copy.deepcopy(records[3]), 0.1))
        after = restored.suggest(5, records)
    finally:
        restored.close()
    assert uninterrupted == {"completed": 2.0, "failed": 1.0, "best": 0.2}
    assert after == {"completed": 3.0, "failed": 1.0, "best": 0.1}


def test_restore_with_parameters_replays_each_trial_where_it_lay(source):
    spec = spec_for(source, optimizer="tpe")
    sweep = ScriptedSweep(parallelism=2)
    first = make_search_method(spec)
    try:
        sweep.run(6, first)
    finally:
        first.close()
    restored = sweep.restored(spec)
    try:
        following = restored.suggest(len(sweep.records), sweep.records)
    finally:
        restored.close()
    assert set(following) == {"x", "c"}


def test_prior_sweeps_trials_come_first(source):
    from ktsweep.service.search.warm_start import PriorTrial

    # Uniform in [0, 1]: each value is its own quantile, what `Counting` suggests.
    counted = {name: {"min": 0.0, "max": 1.0} for name in ("completed", "failed", "best")}
    search = make_search_method(spec_for(source, optimizer="counting", parameters=counted))
    try:
        search.learn_prior_trials(
            [PriorTrial({"completed": 0.0, "failed": 0.0, "best": 0.0}, [0.05])]
        )
        assert search.suggest(0, []) == {"completed": 1.0, "failed": 0.0, "best": 0.05}
    finally:
        search.close()


def test_prior_sweeps_are_not_learned_with_a_search_space_function(source):
    from ktsweep.service.search.warm_start import PriorTrial

    search = make_search_method(
        spec_for(source, optimizer="counting", search_space="counting_space")
    )
    try:
        search.learn_prior_trials(
            [PriorTrial({"completed": 0.0, "failed": 0.0, "best": 0.0}, [0.05])]
        )
        assert search.suggest(0, []) == {"completed": 0.0, "failed": 0.0, "best": 0.0}
    finally:
        search.close()


# --- the child process -------------------------------------------------------------------------


def test_the_child_gets_no_secrets(source, monkeypatch):
    monkeypatch.setenv("KTSWEEP_SECRET", "do-not-leak")
    monkeypatch.setenv("KTSWEEP_API_TOKENS", "tok-1")
    search = make_search_method(spec_for(source, search_space="secrets"))
    try:
        config = search.suggest(0, [])
    finally:
        search.close()
    assert config["secret"] is None and config["token"] is None
    assert os.environ["KTSWEEP_SECRET"] == "do-not-leak"


def test_code_that_hangs_fails_the_suggestion_and_is_killed(source, monkeypatch):
    monkeypatch.setenv("KTSWEEP_USER_CODE_TIMEOUT_S", "10")
    search = make_search_method(spec_for(source, search_space="hang"))
    try:
        with pytest.raises(UserCodeError, match="KTSWEEP_USER_CODE_TIMEOUT_S"):
            search.suggest(0, [])
        assert not search._child.alive
    finally:
        search.close()


def test_code_that_exits_fails_the_suggestion_with_its_exit_code(source):
    search = make_search_method(spec_for(source, search_space="exits"))
    try:
        with pytest.raises(UserCodeError, match="exit code 3"):
            search.suggest(0, [])
    finally:
        search.close()


def test_a_new_child_replays_the_sweep_after_one_died(source):
    spec = spec_for(source, optimizer="counting", search_space="counting_space")
    search = make_search_method(spec)
    try:
        records = [TrialRecord(n, search.suggest(n, []), "running") for n in range(2)]
        search.observe(finish(records[0], 0.5))
        search._child.close()  # as if it had been killed
        search.observe(finish(records[1], 0.25))
        assert search.suggest(2, records) == {"completed": 2.0, "failed": 0.0, "best": 0.25}
    finally:
        search.close()


def test_a_source_no_longer_allowed_does_not_run(source, monkeypatch):
    monkeypatch.delenv("KTSWEEP_ALLOWED_PROGRAM_DIRS")  # narrowed since it was submitted
    search = make_search_method(spec_for(source, search_space="secrets"))
    try:
        with pytest.raises(UserCodeError, match="KTSWEEP_ALLOWED_PROGRAM_DIRS"):
            search.suggest(0, [])
        assert not search._child.alive
    finally:
        search.close()


@pytest.mark.parametrize(
    ("optimizer", "search_space", "message"),
    [
        ("study_maximizing", "space", "directions"),
        ("not_an_optimizer", "space", "returned int"),
        ("tpe", "raises", "no space today"),
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


def test_an_optimizer_may_return_a_whole_study(source):
    search = make_search_method(
        spec_for(source, optimizer="study_minimizing", search_space="space")
    )
    try:
        config = search.suggest(0, [])
    finally:
        search.close()
    assert math.isfinite(config["dropout"])


# --- the spec's checks -------------------------------------------------------------------------


def test_check_accepts_code_in_an_allowed_folder(source, tmp_path):
    spec = spec_for(source, optimizer="tpe", search_space="space")
    assert check_scheduler_code(spec, settings_for(source.parent, tmp_path)) == []
    assert check_search_space(spec) == []  # no `parameters` needed: `space` defines them


def paths_of(problems):
    return {problem.path for problem in problems}


def test_check_refuses_a_source_outside_the_allowed_folders(source, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    spec = spec_for(source, optimizer="tpe")
    problems = check_scheduler_code(spec, settings_for(elsewhere, tmp_path))
    assert paths_of(problems) == {"scheduler.source"}
    assert "KTSWEEP_ALLOWED_PROGRAM_DIRS" in problems[0].message


def test_check_follows_symlinks_out_of_the_allowed_folders(source, tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    link = allowed / "link.py"
    link.symlink_to(source)
    problems = check_scheduler_code(
        spec_for(link, optimizer="tpe"), settings_for(allowed, tmp_path)
    )
    assert paths_of(problems) == {"scheduler.source"}


def test_check_refuses_the_controllers_own_files(tmp_path):
    settings = settings_for(tmp_path, tmp_path)
    artifacts = Path(settings.artifact_dir)
    artifacts.mkdir()
    planted = artifacts / "planted.py"
    planted.write_text(SOURCE)
    problems = check_scheduler_code(spec_for(planted, optimizer="tpe"), settings)
    assert paths_of(problems) == {"scheduler.source"}
    assert "controller's own files" in problems[0].message


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"optimizer": "module.tpe"}, "scheduler.optimizer"),
        ({"search_space": "class"}, "scheduler.search_space"),
        ({"optimizer": None}, "scheduler.source"),
        ({"source": "notes.txt"}, "scheduler.source"),
        ({"source": "missing.py"}, "scheduler.source"),
        ({"source": None}, "scheduler.optimizer"),
        ({"engine": "ax", "optimizer": "nowhere"}, "scheduler.optimizer"),
        ({"optimizer": "nowhere"}, "scheduler.optimizer"),
        ({"search_space": "two_arguments"}, "scheduler.search_space"),
    ],
)
def test_check_says_what_is_wrong_with_the_names(source, tmp_path, changes, path):
    (source.parent / "notes.txt").write_text("not python")
    fields = {"engine": "optuna", "source": str(source), "optimizer": "tpe", **changes}
    if fields["source"] in ("notes.txt", "missing.py"):
        fields["source"] = str(source.parent / fields["source"])
    spec = spec_for(source).model_copy(update={"scheduler": SchedulerSpec(**fields)})
    problems = check_scheduler_code(spec, settings_for(source.parent, tmp_path))
    assert path in paths_of(problems), problems


def test_check_refuses_search_space_with_parameters(source, tmp_path):
    spec = spec_for(source, search_space="space", parameters=SPACE)
    problems = check_scheduler_code(spec, settings_for(source.parent, tmp_path))
    assert paths_of(problems) == {"scheduler.search_space"}


def test_check_names_the_import_error_of_a_broken_source(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("import a_module_that_is_not_there\n")
    problems = check_scheduler_code(
        spec_for(broken, optimizer="tpe"), settings_for(tmp_path, tmp_path)
    )
    assert paths_of(problems) == {"scheduler.source"}
    assert "a_module_that_is_not_there" in problems[0].message
