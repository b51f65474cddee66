"""Item 4 of the trust boundary: trial code never sees the operator's secrets (the API tokens,
the key that signs trial tokens, the database URL). Each trial reads its own environment, and
its process's `/proc/self/environ`, from inside the trial, on a real `ktsweep serve` whose
local Ray runs the trials."""

from __future__ import annotations

import os
import stat
import textwrap

import httpx
import pytest

from ktsweep.client import Client
from tests.e2e.conftest import ServerProcess

TOKEN = "secret-api-token-1b7e"
SIGNING_KEY = "secret-signing-key-93fd"
SECRETS = {"KTSWEEP_API_TOKENS": TOKEN, "KTSWEEP_SECRET": SIGNING_KEY}

# Fails the trial (or the search-space discovery) if it can see any secret.
PROBE = """
import os
import keras
import numpy as np

SECRET_VALUES = {values!r}


def secrets_seen():
    seen = [name for name in os.environ if name in ("KTSWEEP_API_TOKENS", "KTSWEEP_SECRET",
                                                    "KTSWEEP_DATABASE_URL")]
    with open("/proc/self/environ", "rb") as environ:
        raw = environ.read().decode(errors="replace")
    seen += [value for value in SECRET_VALUES if value in raw]
    return seen


def build_model(hp):
    seen = secrets_seen()
    if seen:
        raise RuntimeError(f"trial code sees the operator's secrets: {{seen}}")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(hp.Int("units", 2, 4))])
    model.compile("sgd", "mse")
    return model


def load_data():
    x = np.zeros((8, 4), "float32")
    return {{"x": x, "y": x[:, :1], "validation_data": (x, x[:, :1])}}
"""

PROGRAM = """#!/usr/bin/env python3
import sys
sys.path.insert(0, {modules!r})
import wandb
from probe_secrets import secrets_seen

seen = secrets_seen()
run = wandb.init()
run.log({{"secrets_seen": len(seen), "loss": 1.0}})
run.finish()
sys.exit(3 if seen else 0)
"""


@pytest.fixture(scope="module")
def secret_server(tmp_path_factory):
    """`ktsweep serve` holding secrets, allowing the probe module and its program."""
    workdir = tmp_path_factory.mktemp("secrets")
    modules = workdir / "modules"
    modules.mkdir()
    database_url = f"sqlite:///{workdir / 'ktsweep.db'}"
    values = [TOKEN, SIGNING_KEY, database_url]
    (modules / "probe_secrets.py").write_text(textwrap.dedent(PROBE.format(values=values)))
    programs = workdir / "programs"
    programs.mkdir()
    program = programs / "train.py"
    program.write_text(PROGRAM.format(modules=str(modules)))
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    process = ServerProcess(
        workdir,
        database_url,
        KTSWEEP_ALLOWED_MODULES="probe_secrets",
        KTSWEEP_ALLOWED_PROGRAM_DIRS=str(programs),
        PYTHONPATH=str(modules),
        **SECRETS,
    ).start()
    process.programs = programs
    yield process
    process.stop()


def test_the_controller_holds_the_secrets_it_must_keep_from_trials(secret_server):
    # Without a token the API refuses: the server really runs with these secrets.
    assert httpx.get(f"{secret_server.url}/api/v1/sweeps").status_code == 401


def test_a_keras_trial_on_the_local_ray_sees_no_secret(secret_server):
    with Client(secret_server.url, token=TOKEN) as api:
        sweep = api.submit(
            {
                "method": "random",
                "metric": {"name": "val_loss", "goal": "minimize"},
                "run_cap": 1,
                "trial": {
                    "hypermodel": "probe_secrets:build_model",
                    "data": "probe_secrets:load_data",
                    "fit": {"epochs": 1},
                },
                "wandb": {"mode": "disabled"},
            }
        )
        final = api.wait(sweep["id"], timeout_s=300)
        (trial,) = api.trials(sweep["id"])
    assert trial["state"] == "completed", trial["error"]
    assert final["state"] == "finished"


def test_a_program_trial_sees_no_secret(secret_server):
    with Client(secret_server.url, token=TOKEN) as api:
        sweep = api.submit(
            {
                "method": "random",
                "metric": {"name": "loss", "goal": "minimize"},
                "program": "train.py",
                "working_dir": str(secret_server.programs),
                "command": ["${env}", "${interpreter}", "${program}", "${args}"],
                "parameters": {"units": {"value": 2}},
                "run_cap": 1,
                "wandb": {"mode": "offline"},
            }
        )
        api.wait(sweep["id"], timeout_s=300)
        (trial,) = api.trials(sweep["id"])
    assert trial["state"] == "completed", trial["error"]
    assert trial["metrics"]["secrets_seen"] == 0


def test_this_test_process_is_not_where_the_secrets_came_from():
    # The secrets are given to the server alone, so a trial that sees them got them from it.
    assert not set(SECRETS) & set(os.environ)
