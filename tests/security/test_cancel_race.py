"""Item 9 of the trust boundary: cancel stops a sweep whatever the scheduler is doing. With
many trials launched in one scheduling pass, a cancel at any moment leaves no trial pending or
running, and no trial is launched into the sweep afterwards; on SQLite and PostgreSQL, against
a real `ktsweep serve`."""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import create_engine, text

from ktsweep.client import Client
from tests.e2e.conftest import ServerProcess
from tests.service.conftest import POSTGRES_ADMIN_URL, require_postgres

PARALLELISM = 24
SETTLE_S = 30  # the promise is "within a few seconds"; this only bounds a broken run


def sleeper_sweep(name: str) -> dict:
    return {
        "name": name,
        "method": "random",
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"epoch_s": {"value": 0.2}},
        "run_cap": 200,
        "parallelism": PARALLELISM,
        "trial": {
            "hypermodel": "ktsweep.examples.trivial:build_model",
            "data": "ktsweep.examples.trivial:load_data",
            "fit": {"epochs": 600},
            "resources": {"cpu": 1},
        },
        "wandb": {"mode": "disabled"},
        "callbacks": {"metrics_logger": None},
    }


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def race_server(request, tmp_path_factory):
    workdir = tmp_path_factory.mktemp(f"cancel-{request.param}")
    database_url, admin, name = None, None, None
    if request.param == "postgresql":
        require_postgres()
        name = f"ktsweep_test_{uuid.uuid4().hex[:10]}"
        admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        database_url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    process = ServerProcess(workdir, database_url).start()
    yield process
    process.stop()
    if admin is not None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def active(api: Client, sweep_id: str) -> list[dict]:
    return [t for t in api.trials(sweep_id) if t["state"] in ("pending", "running")]


@pytest.mark.parametrize("cancel_after_s", [0.0, 0.3, 1.5, 4.0])
def test_cancel_leaves_no_trial_pending_or_running(race_server, cancel_after_s):
    with Client(race_server.url) as api:
        sweep = api.submit(sleeper_sweep(f"race-{cancel_after_s}"))
        time.sleep(cancel_after_s)
        api.cancel(sweep["id"])

        deadline = time.monotonic() + SETTLE_S
        while active(api, sweep["id"]) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert active(api, sweep["id"]) == []
        count = len(api.trials(sweep["id"]))
        time.sleep(3)  # a scheduling pass that was under way has ended by now
        trials = api.trials(sweep["id"])
        assert len(trials) == count, "trials were created in the cancelled sweep"
        assert {t["state"] for t in trials} <= {"cancelled", "completed", "failed"}
        assert api.sweep(sweep["id"])["state"] == "cancelled"
