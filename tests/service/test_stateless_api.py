"""The API without a scheduler (`ktsweep serve --no-scheduler`) and the scheduler lease
(`ktsweep.service.leadership`): writes go to the database and wake the active scheduler, which
acts on them; early-termination answers come from the database; a standby takes the lease once
the active scheduler's connection is gone."""

from __future__ import annotations

import json
import os
import signal
import threading
import uuid
from contextlib import contextmanager
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from typer.testing import CliRunner

from ktsweep.service import cli
from ktsweep.service.app import create_app
from ktsweep.service.config import Settings
from ktsweep.service.db import make_engine, make_sessions, migrate
from ktsweep.service.leadership import (
    CHANNEL,
    ActiveTerm,
    LeaseLostError,
    SchedulerLease,
    SweepWatcher,
    _conninfo,
    active_scheduler,
)
from ktsweep.service.models import Sweep, Trial, TrialReport
from ktsweep.service.scheduler import Scheduler
from tests.e2e.conftest import ServerProcess
from tests.service.helpers import DIGITS_SPEC
from tests.waiting import wait_for


@contextmanager
def api_only(database_url: str, tmp_path):
    """A `TestClient` on an app that serves the API without a scheduler."""
    config = Settings(database_url=database_url, artifact_dir=tmp_path / "artifacts")
    app = create_app(config, scheduler=False)
    with TestClient(app) as client:
        client.app_state = app.state
        yield client


@contextmanager
def listening(database_url: str):
    """A connection listening on the scheduler's channel; yields a function that returns the
    wake-ups received so far (as dicts)."""
    connection = psycopg.connect(_conninfo(database_url), autocommit=True)
    connection.execute(f"LISTEN {CHANNEL}")
    received: list[dict[str, Any]] = []

    def wake_ups() -> list[dict[str, Any]]:
        received.extend(json.loads(n.payload) for n in connection.notifies(timeout=0.2))
        return list(received)

    try:
        yield wake_ups
    finally:
        connection.close()


class HeldExecutor:
    """An in-memory trial executor: trials start in their group's lanes and never end; cancels
    and withdrawals are recorded."""

    def __init__(self):
        self.launched: list[str] = []
        self.running: dict[str, list[str]] = {}
        self.cancelled: list[str] = []
        self.withdrawn: list[str] = []

    def start(self) -> None:
        pass

    def launch(self, spec, on_done, *, group=None, lanes=0, on_start=None) -> bool:
        self.launched.append(spec.trial_id)
        starts = not lanes or self.has_idle_lane(group, lanes)
        if starts:
            self.running.setdefault(group, []).append(spec.trial_id)
        return starts

    def has_idle_lane(self, group, lanes) -> bool:
        return len(self.running.get(group, [])) < lanes

    def withdraw(self, group) -> list[str]:
        self.withdrawn.append(group)
        return []

    def cancel(self, trial_id: str) -> None:
        self.cancelled.append(trial_id)


# The lease and the wake-ups need PostgreSQL.
postgresql_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@postgresql_only
def test_writes_change_the_database_and_wake_the_scheduler(database_url, tmp_path):
    with api_only(database_url, tmp_path) as client, listening(database_url) as wake_ups:
        assert client.get("/healthz").json()["role"] == "api"
        created = client.post("/api/v1/sweeps", json=DIGITS_SPEC)
        assert created.status_code == 201, created.text
        sweep_id = created.json()["id"]
        assert created.json()["state"] == "running"
        for action, state in (("pause", "paused"), ("resume", "running"), ("cancel", "cancelled")):
            answer = client.post(f"/api/v1/sweeps/{sweep_id}/{action}")
            assert answer.status_code == 200, answer.text
            assert answer.json()["state"] == state
            assert client.get(f"/api/v1/sweeps/{sweep_id}").json()["state"] == state
        expected = [
            {"sweep": sweep_id, "change": change}
            for change in ("submitted", "pause", "resume", "cancel")
        ]
        assert wait_for(lambda: wake_ups() == expected, timeout_s=30)
        # A transition the state does not allow is refused, and wakes nobody.
        again = client.post(f"/api/v1/sweeps/{sweep_id}/resume")
        assert again.status_code == 409
        assert "cancelled" in again.json()["detail"]
        assert wake_ups() == expected


@postgresql_only
def test_readyz_names_the_scheduler_that_holds_the_lease(database_url, tmp_path):
    with api_only(database_url, tmp_path) as client:
        waiting = client.get("/readyz")
        assert waiting.status_code == 503
        assert any("ktsweep scheduler" in problem for problem in waiting.json()["problems"])
        lease = SchedulerLease(database_url)
        try:
            assert lease.try_acquire()
            ready = client.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["scheduler"] == lease.identity
        finally:
            lease.release()
        assert client.get("/readyz").status_code == 503


@postgresql_only
def test_a_standby_takes_the_lease_once_the_active_connection_is_gone(database_url, tmp_path):
    with api_only(database_url, tmp_path) as client:  # the schema is there
        sessions = client.app_state.sessions
        active, standby = SchedulerLease(database_url), SchedulerLease(database_url)
        try:
            assert active.try_acquire()
            assert not standby.try_acquire()
            with sessions() as session:
                assert active_scheduler(session) == active.identity
            # As when the active scheduler's process or machine dies: its connection ends.
            with sessions() as session:
                session.execute(
                    text("SELECT pg_terminate_backend(:pid)"),
                    {"pid": active._connection.info.backend_pid},
                )
            with sessions() as session:
                assert wait_for(lambda: active_scheduler(session) is None, timeout_s=30)
            with pytest.raises(LeaseLostError):
                active.wait(0.1)
            assert standby.try_acquire()
            with sessions() as session:
                assert active_scheduler(session) == standby.identity
        finally:
            active.release()
            standby.release()


@postgresql_only
def test_the_active_scheduler_takes_its_lease_again_after_its_connection_broke(
    database_url, tmp_path
):
    """A database restart ends every connection; with no other scheduler about, the active one
    takes the lock again and goes on (it stops only when another took it)."""
    with api_only(database_url, tmp_path) as client:
        sessions = client.app_state.sessions
        scheduler = Scheduler(
            sessions, HeldExecutor(), api_url="http://api", artifact_dir=tmp_path / "artifacts"
        )
        lease = SchedulerLease(database_url)
        assert lease.try_acquire()
        lost = threading.Event()
        term = ActiveTerm(lease, SweepWatcher(scheduler, sessions), 300, lambda _: lost.set())
        term.start()
        try:
            first = lease.backend_pid
            with sessions() as session:
                session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
            wait_for(lambda: lease.held and lease.backend_pid != first, timeout_s=60)
            assert client.get("/readyz").json()["scheduler"] == lease.identity
            assert not lost.is_set()
        finally:
            term.stop()
            lease.release()


@postgresql_only
def test_the_active_scheduler_acts_on_what_the_api_wrote(database_url, tmp_path):
    """The API process and the scheduler share only the database: a submission starts trials,
    a pause takes back those waiting in lanes, a cancel stops them, all through wake-ups (the
    fallback poll is set long, so it is not what does it)."""
    with api_only(database_url, tmp_path) as client:
        sessions = client.app_state.sessions
        executor = HeldExecutor()
        scheduler = Scheduler(
            sessions, executor, api_url="http://api", artifact_dir=tmp_path / "artifacts"
        )
        lease = SchedulerLease(database_url)
        assert lease.try_acquire()
        lost = threading.Event()
        term = ActiveTerm(lease, SweepWatcher(scheduler, sessions), 300, lambda _: lost.set())
        scheduler.start()
        term.start()
        try:
            spec = {**DIGITS_SPEC, "parallelism": 2, "run_cap": 4}
            sweep_id = client.post("/api/v1/sweeps", json=spec).json()["id"]
            wait_for(lambda: len(executor.running.get(sweep_id, [])) == 2, timeout_s=60)
            assert executor.running[sweep_id] == [f"{sweep_id}-0", f"{sweep_id}-1"]
            paused = client.post(f"/api/v1/sweeps/{sweep_id}/pause").json()
            assert paused["state"] == "paused"
            wait_for(lambda: executor.withdrawn == [sweep_id], timeout_s=60)
            client.post(f"/api/v1/sweeps/{sweep_id}/resume")
            cancelled = client.post(f"/api/v1/sweeps/{sweep_id}/cancel").json()
            assert cancelled["state"] == "cancelled"
            with sessions() as session:
                marked = set(
                    session.scalars(
                        select(Trial.id).where(
                            Trial.sweep_id == sweep_id, Trial.state == "cancelled"
                        )
                    )
                )
            assert set(executor.running[sweep_id]) <= marked
            wait_for(lambda: set(executor.cancelled) == marked, timeout_s=60)
            assert not lost.is_set()
        finally:
            term.stop()
            scheduler.stop()
            lease.release()


@postgresql_only
def test_api_workers_share_nothing_but_the_database(database_url, tmp_path):
    """`ktsweep serve --no-scheduler --workers 2` for real: two processes under uvicorn's own
    manager, each with the request-head limits, each answering every route; one that dies is
    started again."""
    engine = make_engine(database_url)
    migrate(engine)  # the lease's row lives in the schema the API would make
    engine.dispose()
    lease = SchedulerLease(database_url)
    assert lease.try_acquire()  # a scheduler is active: the API is ready
    server = ServerProcess(
        tmp_path,
        database_url=database_url,
        args=("--no-scheduler", "--workers", "2"),
        KTSWEEP_MAX_HEADER_BYTES="2048",
    )
    try:
        server.start()

        def pids_seen(seen: set[int]):
            def another() -> set[int]:
                answer = httpx.get(f"{server.url}/healthz", timeout=10).json()
                assert answer["role"] == "api"
                seen.add(answer["pid"])
                return seen if len(seen) >= 2 else set()

            return another

        first = wait_for(pids_seen(set()), timeout_s=120)
        for _ in range(6):  # fresh connections, spread over both processes
            big = httpx.get(f"{server.url}/healthz", headers={"x-big": "a" * 4096}, timeout=10)
            assert big.status_code == 431
        ready = httpx.get(f"{server.url}/readyz", headers=server.auth, timeout=10)
        assert ready.json()["scheduler"] == lease.identity
        with httpx.Client(base_url=server.url, headers=server.auth, timeout=60) as api:
            sweep_id = api.post("/api/v1/sweeps", json=DIGITS_SPEC).json()["id"]
        for _ in range(4):  # each on a fresh connection
            answer = httpx.get(f"{server.url}/api/v1/sweeps/{sweep_id}", headers=server.auth)
            assert answer.json()["state"] == "running"
        os.kill(min(first), signal.SIGKILL)
        wait_for(lambda: (pids := pids_seen({max(first)})()) and pids != first, timeout_s=120)
    finally:
        server.stop()
        lease.release()


RULE_SPEC: dict[str, Any] = {
    **DIGITS_SPEC,
    "run_cap": 8,
    "early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 2},
}


def _store_sweep_with_reports(sessions, values: list[float]) -> str:
    """A running sweep with a rule: a completed trial per value (reported at step 1), and two
    running trials that have not reported yet."""
    sweep_id = uuid.uuid4().hex[:12]
    with sessions() as session:
        session.add(Sweep(id=sweep_id, name="rule", state="running", spec=RULE_SPEC))
        session.flush()
        for number in range(len(values) + 2):
            done = number < len(values)
            trial_id = f"{sweep_id}-{number}"
            metrics = {"val_accuracy": values[number]} if done else {}
            session.add(
                Trial(
                    id=trial_id,
                    sweep_id=sweep_id,
                    number=number,
                    state="completed" if done else "running",
                    hyperparameters={"units": 16},
                    metrics=metrics,
                    objective=metrics.get("val_accuracy"),
                    epochs=1 if done else 0,
                    attempts=1,
                )
            )
            if done:
                session.flush()
                session.add(TrialReport(trial_id=trial_id, step=1, metrics=metrics))
        session.commit()
    return sweep_id


def test_reports_get_the_early_termination_answer_from_the_database(database_url, tmp_path):
    with api_only(database_url, tmp_path) as client:
        sessions = client.app_state.sessions
        sweep_id = _store_sweep_with_reports(sessions, [0.9, 0.8, 0.85, 0.95])
        bad, good = f"{sweep_id}-4", f"{sweep_id}-5"
        answers = {}
        for trial_id, value in ((bad, 0.1), (good, 0.99)):
            answer = client.post(
                f"/api/v1/trials/{trial_id}/reports",
                json={"step": 1, "metrics": {"val_accuracy": value}},
            )
            assert answer.status_code == 200, answer.text
            answers[trial_id] = answer.json()["action"]
        assert answers == {bad: "stop", good: "continue"}
        # The scheduler's own rule, on the same database, agrees.
        engine = make_engine(database_url)
        try:
            scheduler = Scheduler(
                make_sessions(engine), None, api_url=None, artifact_dir=tmp_path / "artifacts"
            )
            assert {t: scheduler.decide_on_report(t)[0] for t in answers} == answers
        finally:
            engine.dispose()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["serve", "--no-scheduler"], "PostgreSQL"),
        (["scheduler", "--api-url", "http://127.0.0.1:8000"], "PostgreSQL"),
        (["serve", "--workers", "2"], "--no-scheduler"),
    ],
)
def test_the_commands_refuse_what_cannot_work(args, says, tmp_path, monkeypatch):
    monkeypatch.setenv("KTSWEEP_DATABASE_URL", f"sqlite:///{tmp_path / 'ktsweep.db'}")
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 2, result.output
    assert says in result.output
