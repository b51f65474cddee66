"""Building a controller app and stored rows for service tests (a real database, a real Ray)."""

from __future__ import annotations

import socket
import uuid
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

import ktsweep.service.db
from ktsweep.service.app import create_app
from ktsweep.service.config import Settings
from ktsweep.service.models import Sweep, SweepState, Trial
from ktsweep.worker.ray_runner import ensure_ray

DIGITS_SPEC: dict[str, Any] = {
    "name": "digits",
    "method": "random",
    "metric": {"name": "val_accuracy", "goal": "maximize"},
    "parameters": {"units": {"values": [16, 32]}},
    "run_cap": 2,
    "trial": {
        "hypermodel": "ktsweep.examples.digits:build_model",
        "data": "ktsweep.examples.digits:load_data",
        "fit": {"epochs": 1},
    },
    "wandb": {"mode": "disabled"},
}


@contextmanager
def controller(database_url: str, tmp_path: Path, **settings: Any):
    """A `TestClient` on a started controller app (its scheduler runs on the local Ray)."""
    # Ray's own processes die with the thread that started them; the TestClient's lifespan runs
    # in a short-lived thread, so start Ray from this (main) thread first.
    ensure_ray()
    config = Settings(database_url=database_url, artifact_dir=tmp_path / "artifacts", **settings)
    app = create_app(config)
    with TestClient(app) as client:
        client.app_state = app.state
        yield client


def store_sweep(
    client: TestClient,
    state: str = SweepState.PAUSED.value,
    objectives: list[float | None] | None = None,
    trial_state: str = "completed",
    goal: str = "maximize",
    run_cap: int = 2,
    max_retries: int = 0,
    started_at: datetime | None = None,
    metric: bool = True,
) -> Sweep:
    """Store a sweep (paused by default, so the scheduler leaves it alone) and its trials."""
    spec = {**DIGITS_SPEC, "metric": {"name": "val_accuracy", "goal": goal}, "run_cap": run_cap}
    if not metric:
        del spec["metric"]
    spec["trial"] = {**DIGITS_SPEC["trial"], "max_retries": max_retries}
    with client.app_state.sessions() as session:
        sweep = Sweep(id=uuid.uuid4().hex[:12], name="stored", state=state, spec=spec)
        session.add(sweep)
        session.flush()
        for number, objective in enumerate(objectives or []):
            session.add(
                Trial(
                    id=f"{sweep.id}-{number}",
                    sweep_id=sweep.id,
                    number=number,
                    state=trial_state,
                    hyperparameters={"units": 16},
                    metrics={} if objective is None else {"val_accuracy": objective},
                    objective=objective,
                    attempts=1,
                    started_at=started_at,
                    heartbeat_at=started_at,
                )
            )
        session.commit()
        return sweep


def read_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length, read off a keep-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += receive(sock, data)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += receive(sock, data + body)
    return head + b"\r\n\r\n" + body


def receive(sock: socket.socket, so_far: bytes) -> bytes:
    chunk = sock.recv(65536)
    if not chunk:
        raise ConnectionError(f"the connection closed before a whole response: {so_far[:300]!r}")
    return chunk


@contextmanager
def database_at_revision(engine: Engine, revision: str):
    """A connection (in a transaction, committed at the end) to `engine`'s database migrated
    only up to `revision`, holding one finished sweep `s1` named 'old' as that schema stored
    it: for tests of later migrations."""
    config = Config()
    config.set_main_option(
        "script_location", str(Path(ktsweep.service.db.__file__).parent / "migrations")
    )
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        connection.execute(
            text(
                "INSERT INTO sweeps (id, name, state, spec, created_at) "
                "VALUES ('s1', 'old', 'finished', '{}', '2026-01-01 00:00:00')"
            )
        )
        yield connection
