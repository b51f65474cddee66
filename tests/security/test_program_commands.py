"""Item 2 of the trust boundary: a `program` sweep runs its program, not any command. The rules
fix the executable (`${interpreter} ${program}`, `python ${program}` or `${program}`), and the
program is a file in an allowed folder, never the controller's database or artifacts. Each
attack goes to a real `ktsweep serve` over HTTP."""

from __future__ import annotations

import stat

import httpx
import pytest

from ktsweep.client import Client
from tests.e2e.conftest import ServerProcess

TOKEN = "program-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

TRAIN = """import argparse
import wandb

parser = argparse.ArgumentParser()
parser.add_argument("--batch_size", type=int, default=-1)
parser.add_argument("--units", type=int, default=-1)
arguments = parser.parse_args()
run = wandb.init()
run.log({"loss": 1.0, "batch_size_seen": arguments.batch_size, "units_seen": arguments.units})
run.finish()
"""


@pytest.fixture(scope="module")
def program_server(tmp_path_factory):
    """`ktsweep serve` whose program folder also holds its database and artifact folder."""
    workdir = tmp_path_factory.mktemp("programs")
    programs = workdir / "programs"
    (programs / "artifacts").mkdir(parents=True)
    (programs / "artifacts" / "checkpoint.py").write_text("print('not a program')\n")
    (programs / "train.py").write_text(TRAIN)
    process = ServerProcess(
        workdir,
        f"sqlite:///{programs / 'ktsweep.db'}",
        KTSWEEP_API_TOKENS=TOKEN,
        KTSWEEP_ALLOWED_PROGRAM_DIRS=str(programs),
        KTSWEEP_ARTIFACT_DIR=str(programs / "artifacts"),
    ).start()
    process.programs = programs
    yield process
    process.stop()


@pytest.fixture()
def api(program_server):
    with httpx.Client(base_url=program_server.url, headers=AUTH, timeout=60) as client:
        yield client


def sweep(program_server, command=None, program="train.py") -> dict:
    body = {
        "method": "random",
        "metric": {"name": "loss", "goal": "minimize"},
        "program": program,
        "working_dir": str(program_server.programs),
        "parameters": {"batch_size": {"values": [32]}, "units": {"value": 8}},
        "run_cap": 1,
        "wandb": {"mode": "offline"},
    }
    if command is not None:
        body["command"] = command
    return body


def assert_refused(api, body, path) -> str:
    before = api.get("/api/v1/sweeps").json()["items"]
    answer = api.post("/api/v1/sweeps", json=body)
    assert answer.status_code == 422, answer.text
    problems = answer.json()["detail"]
    messages = [problem["msg"] for problem in problems if problem["path"] == path]
    assert messages, problems
    assert api.get("/api/v1/sweeps").json()["items"] == before
    return " ".join(messages)


@pytest.mark.parametrize(
    "command",
    [
        ["/bin/sh", "-c", "touch {marker}"],
        ["${env}", "/bin/sh", "-c", "touch {marker}"],
        ["${env}", "python", "-c", "open('{marker}', 'w')"],
        ["${env}", "${interpreter}", "-m", "http.server"],
        ["${env}", "${interpreter}", "-c", "open('{marker}', 'w')", "${program}"],
        ["${program}", "${env}", "/bin/sh", "-c", "touch {marker}"],
    ],
)
def test_a_command_that_runs_something_else_is_refused(api, program_server, tmp_path, command):
    marker = tmp_path / "pwned"
    command = [part.replace("{marker}", str(marker)) for part in command]
    message = assert_refused(api, sweep(program_server, command), "command")
    assert "KTSWEEP_ALLOW_ANY_COMMAND" in message or "macro" in message
    assert not marker.exists()


@pytest.mark.parametrize("program", ["ktsweep.db", "artifacts/checkpoint.py", "../../etc/passwd"])
def test_the_program_is_never_the_controllers_own_file_nor_outside_its_folders(
    api, program_server, program
):
    assert_refused(api, sweep(program_server, program=program), "program")


def test_a_program_run_as_itself_must_be_executable(api, program_server):
    train = program_server.programs / "train.py"
    train.chmod(train.stat().st_mode & ~(stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH))
    message = assert_refused(api, sweep(program_server, ["${program}", "${args}"]), "command")
    assert "not executable" in message


def test_public_wandb_commands_with_custom_macros_still_run(program_server):
    command = ["${env}", "python", "${program}", "--batch_size=${batch_size}", "--units=${units}"]
    with Client(program_server.url, token=TOKEN) as client:
        submitted = client.submit(sweep(program_server, command))
        client.wait(submitted["id"], timeout_s=300)
        (trial,) = client.trials(submitted["id"])
    assert trial["state"] == "completed", trial["error"]
    assert trial["metrics"]["batch_size_seen"] == 32
    assert trial["metrics"]["units_seen"] == 8


def test_the_operator_can_allow_any_command(tmp_path):
    from ktsweep.service.config import Settings
    from ktsweep.service.entry_policy import check_entry_points
    from ktsweep.service.spec import SpecError, parse_spec

    (tmp_path / "train.py").write_text(TRAIN)
    body = {
        "method": "random",
        "metric": {"name": "loss"},
        "program": "train.py",
        "working_dir": str(tmp_path),
        "command": ["/bin/sh", "-c", "echo"],
        "parameters": {"units": {"value": 8}},
    }
    settings = Settings(allowed_program_dirs=str(tmp_path), database_url="sqlite://")
    with pytest.raises(SpecError):
        check_entry_points(parse_spec(body), settings)
    opted_in = settings.model_copy(update={"allow_any_command": True})
    check_entry_points(parse_spec(body), opted_in)  # accepted
