"""Item 1 of the trust boundary: a spec reaches only code the operator allowed, and the
controller never runs that code in its own process. Each attack is sent to a real
`ktsweep serve` over HTTP, as a token holder would send it."""

from __future__ import annotations

import textwrap

import httpx
import pytest

from tests.e2e.conftest import ServerProcess

TOKEN = "code-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DIGITS = "ktsweep.examples.digits"

# A module the operator allows, whose build(hp) misbehaves.
HOSTILE_MODULE = """
import os
import time

import keras


def build_exits(hp):
    hp.Int("units", 8, 16)
    os._exit(3)


def build_sleeps(hp):
    hp.Int("units", 8, 16)
    time.sleep(3600)


def load_data():
    return {}
"""


@pytest.fixture(scope="module")
def code_server(tmp_path_factory):
    """`ktsweep serve` allowing the bundled examples and one hostile module."""
    workdir = tmp_path_factory.mktemp("code")
    (workdir / "modules").mkdir()
    (workdir / "modules" / "hostile_models.py").write_text(textwrap.dedent(HOSTILE_MODULE))
    process = ServerProcess(
        workdir,
        KTSWEEP_API_TOKENS=TOKEN,
        KTSWEEP_ALLOWED_MODULES=f"{DIGITS},hostile_models",
        KTSWEEP_USER_CODE_TIMEOUT_S="20",
        PYTHONPATH=str(workdir / "modules"),
    ).start()
    yield process
    process.stop()


@pytest.fixture()
def api(code_server):
    with httpx.Client(base_url=code_server.url, headers=AUTH, timeout=120) as client:
        yield client


def spec(**trial) -> dict:
    return {
        "method": "random",
        "metric": {"name": "val_accuracy", "goal": "maximize"},
        "run_cap": 1,
        "trial": {"hypermodel": f"{DIGITS}:build_model", "data": f"{DIGITS}:load_data", **trial},
        "wandb": {"mode": "disabled"},
    }


def assert_refused(api: httpx.Client, body: dict, path: str) -> str:
    """The spec gets a 422 naming `path`, nothing is stored, and the controller is well."""
    before = api.get("/api/v1/sweeps").json()["items"]
    answer = api.post("/api/v1/sweeps", json=body)
    assert answer.status_code == 422, answer.text
    problems = {problem["path"]: problem["msg"] for problem in answer.json()["detail"]}
    assert path in problems, problems
    assert api.get("/api/v1/sweeps").json()["items"] == before
    assert api.get("/healthz").status_code == 200
    return problems[path]


@pytest.mark.parametrize("field", ["hypermodel", "data"])
def test_an_allowed_module_is_no_step_to_what_it_imports(api, field):
    # The review's attack: the module part is allowed, the attribute path reaches os.system.
    message = assert_refused(
        api, spec(**{field: f"{DIGITS}:np._pytesttester.os.system"}), f"trial.{field}"
    )
    assert "private" in message


@pytest.mark.parametrize("field", ["hypermodel", "data"])
def test_an_entry_point_must_be_defined_in_the_module_it_names(api, field):
    # A public name the allowed module merely imports (scikit-learn's train_test_split).
    message = assert_refused(api, spec(**{field: f"{DIGITS}:train_test_split"}), f"trial.{field}")
    assert "sklearn" in message and "defined in its own module" in message


def test_an_eval_table_callback_is_a_keras_callback_class_of_an_allowed_module(api):
    for callback in (f"{DIGITS}:np._pytesttester.os.system", f"{DIGITS}:train_test_split"):
        body = {**spec(), "callbacks": {"eval_table": {"callback": callback, "command": "id"}}}
        assert_refused(api, body, "callbacks.eval_table")


def test_an_eval_table_callback_takes_only_its_documented_options(api):
    callback = "ktsweep.callbacks.classification_eval_callback:ClassificationEvalCallback"
    body = {**spec(), "callbacks": {"eval_table": {"callback": callback, "filepath": "/etc"}}}
    body["trial"]["hypermodel"] = f"{DIGITS}:build_model"
    answer = api.post("/api/v1/sweeps", json=body)
    assert answer.status_code == 422, answer.text
    (problem,) = answer.json()["detail"]
    assert problem["path"] == "callbacks.eval_table"
    assert "no argument 'filepath'" in problem["msg"]


def test_build_hp_that_exits_its_process_leaves_the_controller_running(api):
    message = assert_refused(api, spec(hypermodel="hostile_models:build_exits"), "trial.hypermodel")
    assert "ended the process" in message


def test_build_hp_that_never_returns_is_cut_off_by_the_time_limit(api):
    message = assert_refused(
        api, spec(hypermodel="hostile_models:build_sleeps"), "trial.hypermodel"
    )
    assert "took longer than 20 s" in message
    # The child was replaced: the next submission is discovered and stored as usual.
    answer = api.post("/api/v1/sweeps", json=spec())
    assert answer.status_code == 201, answer.text
    api.post(f"/api/v1/sweeps/{answer.json()['id']}/cancel")


@pytest.mark.parametrize(
    ("callbacks", "path"),
    [
        ({"checkpoint": {"filepath": "/etc/cron.d/job"}}, "callbacks.checkpoint.filepath"),
        ({"metrics_logger": {"log_freq": "epoch", "run": "x"}}, "callbacks.metrics_logger.run"),
    ],
)
def test_the_bundled_callbacks_take_only_their_documented_options(api, callbacks, path):
    message = assert_refused(api, {**spec(), "callbacks": callbacks}, path)
    assert "is not an option of" in message
