"""A follower process of the API (`ktsweep serve --processes N`), against a real leader.

The leader is the whole controller app served by uvicorn on its private Unix socket (in a
thread here); the follower is the follower app under a `TestClient`, so every request below
goes to the follower, which must serve it itself or hand it to the leader.
"""

from __future__ import annotations

import threading
import time
import uuid
from contextlib import contextmanager

import uvicorn
from fastapi.testclient import TestClient

from ktsweep.service.app import create_app
from ktsweep.service.config import Settings
from ktsweep.service.models import Sweep, Trial, TrialReport
from ktsweep.service.processes import LeaderLink, bind_unix, new_internal_token
from ktsweep.worker.ray_runner import ensure_ray
from tests.service.helpers import DIGITS_SPEC
from tests.waiting import wait_for

TOKEN = "operator-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class SpyLink(LeaderLink):
    """The real link to the leader, recording which trials it asked about."""

    def __init__(self, *args):
        super().__init__(*args)
        self.asked: list[str] = []

    async def decide(self, trial_id: str):
        self.asked.append(trial_id)
        return await super().decide(trial_id)


@contextmanager
def leader_and_follower(database_url: str, tmp_path):
    ensure_ray()  # from the main thread: Ray's processes die with the thread that starts them
    settings = Settings(
        database_url=database_url, artifact_dir=tmp_path / "artifacts", api_tokens=TOKEN
    )
    token = new_internal_token()
    socket_path = str(tmp_path / "leader.sock")
    leader_app = create_app(settings, internal_token=token)
    server = uvicorn.Server(uvicorn.Config(leader_app, log_level="warning"))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [bind_unix(socket_path)]}, daemon=True
    )
    thread.start()
    assert wait_for(lambda: server.started, timeout_s=60)
    link = SpyLink(socket_path, token)
    follower_app = create_app(settings, leader=link)
    try:
        with TestClient(follower_app) as follower:
            follower.link = link
            follower.leader_app = leader_app
            follower.stop_leader = lambda: (setattr(server, "should_exit", True), thread.join(30))
            yield follower
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def store(app, spec: dict, trials: list[tuple[str, list[float]]]) -> str:
    """A paused sweep of `spec` with trials (state, val_accuracy per step) and their reports."""
    with app.state.sessions() as session:
        sweep = Sweep(id=uuid.uuid4().hex[:12], name="stored", state="paused", spec=spec)
        session.add(sweep)
        session.flush()
        for number, (state, values) in enumerate(trials):
            trial_id = f"{sweep.id}-{number}"
            session.add(
                Trial(
                    id=trial_id,
                    sweep_id=sweep.id,
                    number=number,
                    state=state,
                    hyperparameters={"units": 16},
                    metrics={"val_accuracy": values[-1]} if values else {},
                    objective=values[-1] if values else None,
                    epochs=len(values),
                    attempts=1,
                )
            )
            session.flush()
            for step, value in enumerate(values, start=1):
                session.add(
                    TrialReport(trial_id=trial_id, step=step, metrics={"val_accuracy": value})
                )
        session.commit()
        return sweep.id


def test_follower_hands_submissions_and_lifecycle_to_the_leader(database_url, tmp_path):
    with leader_and_follower(database_url, tmp_path) as follower:
        spec = {**DIGITS_SPEC, "run_cap": 1}
        refused = follower.post("/api/v1/sweeps", json=spec)
        assert refused.status_code == 401  # the leader's own check, on the client's headers
        assert "KTSWEEP_API_TOKENS" in refused.json()["detail"]
        assert follower.get("/api/v1/sweeps", headers=AUTH).json()["items"] == []

        created = follower.post("/api/v1/sweeps", json=spec, headers=AUTH)
        assert created.status_code == 201, created.text
        sweep_id = created.json()["id"]
        # The leader schedules it: the trial runs on Ray and ends.
        trial = wait_for(
            lambda: (
                # Until the scheduler creates the trial, its URL answers 404 (no "state").
                (t := follower.get(f"/api/v1/trials/{sweep_id}-0", headers=AUTH).json()).get(
                    "state"
                )
                in ("completed", "failed")
                and t
            ),
            timeout_s=300,
        )
        assert trial["state"] == "completed", trial["error"]
        finished = wait_for(
            lambda: (
                (s := follower.get(f"/api/v1/sweeps/{sweep_id}", headers=AUTH).json())["state"]
                == "finished"
                and s
            )
        )
        assert finished["trial_counts"]["completed"] == 1

        other = store(follower.leader_app, {**DIGITS_SPEC, "run_cap": 5}, [])
        path = f"/api/v1/sweeps/{other}"
        assert follower.post(f"{path}/resume", headers=AUTH).json()["state"] == "running"
        assert follower.post(f"{path}/pause", headers=AUTH).json()["state"] == "paused"
        assert follower.post(f"{path}/cancel", headers=AUTH).json()["state"] == "cancelled"
        again = follower.post(f"{path}/cancel", headers=AUTH)
        assert again.status_code == 409
        assert "cancelled" in again.json()["detail"]

        # /readyz and /metrics are the leader's.
        assert follower.get("/readyz").json() == {"status": "ready"}
        assert "ktsweep_trials{" in follower.get("/metrics", headers=AUTH).text
        assert follower.get("/metrics").status_code == 401  # reads need the token here
        assert follower.get("/healthz").json()["role"] == "follower"


def test_follower_stores_reports_and_asks_the_leader_only_where_a_rule_decides(
    database_url, tmp_path
):
    with leader_and_follower(database_url, tmp_path) as follower:
        plain = store(follower.leader_app, DIGITS_SPEC, [("running", [])])
        for step in (1, 2, 3):
            answer = follower.post(
                f"/api/v1/trials/{plain}-0/reports",
                json={"step": step, "metrics": {"val_accuracy": 0.5}},
                headers=AUTH,
            )
            assert answer.json() == {"action": "continue"}
        # Asked once: the leader said this sweep has no rule, and the follower remembers.
        assert follower.link.asked == [f"{plain}-0"]
        history = follower.get(f"/api/v1/trials/{plain}-0", headers=AUTH).json()["history"]
        assert [entry["step"] for entry in history] == [1, 2, 3]

        ruled = store(
            follower.leader_app,
            {**DIGITS_SPEC, "early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 3}},
            [
                ("completed", [0.9, 0.9]),
                ("completed", [0.8, 0.8]),
                ("completed", [0.7, 0.7]),
                ("running", []),
                ("running", []),
            ],
        )
        follower.link.asked.clear()
        low = follower.post(
            f"/api/v1/trials/{ruled}-3/reports",
            json={"step": 1, "metrics": {"val_accuracy": 0.1}},
            headers=AUTH,
        )
        high = follower.post(
            f"/api/v1/trials/{ruled}-4/reports",
            json={"step": 1, "metrics": {"val_accuracy": 0.95}},
            headers=AUTH,
        )
        assert low.json() == {"action": "stop"}
        assert high.json() == {"action": "continue"}
        assert follower.link.asked == [f"{ruled}-3", f"{ruled}-4"]
        assert "ktsweep_reports_total" in follower.get("/metrics", headers=AUTH).text


def test_follower_without_its_leader_says_so_and_changes_nothing(database_url, tmp_path):
    with leader_and_follower(database_url, tmp_path) as follower:
        sweep = store(follower.leader_app, DIGITS_SPEC, [("running", [])])
        follower.stop_leader()
        time.sleep(0.2)

        answer = follower.post(f"/api/v1/sweeps/{sweep}/resume", headers=AUTH)
        assert answer.status_code == 503
        assert "try again" in answer.json()["detail"]
        assert answer.headers["retry-after"] == "5"
        assert follower.get(f"/api/v1/sweeps/{sweep}", headers=AUTH).json()["state"] == "paused"

        # Reads and reports need no leader.
        report = follower.post(
            f"/api/v1/trials/{sweep}-0/reports",
            json={"step": 1, "metrics": {"val_accuracy": 0.5}},
            headers=AUTH,
        )
        assert report.json() == {"action": "continue"}
        detail = follower.get(f"/api/v1/trials/{sweep}-0", headers=AUTH).json()
        assert detail["history"] == [{"step": 1, "metrics": {"val_accuracy": 0.5}}]


def test_internal_routes_answer_only_with_the_internal_token(tmp_path):
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'db'}", artifact_dir=tmp_path)
    app = create_app(settings, internal_token=new_internal_token())
    with TestClient(app) as client:
        assert client.post("/internal/trials/x-0/decide").status_code == 404
        wrong = {"x-ktsweep-internal": "guess"}
        assert client.post("/internal/trials/x-0/decide", headers=wrong).status_code == 404
        assert "/internal" not in str(client.get("/openapi.json").json()["paths"])
