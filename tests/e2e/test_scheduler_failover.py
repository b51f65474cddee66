"""Two `ktsweep scheduler` processes and one `ktsweep serve --no-scheduler` on PostgreSQL: kill -9
the active scheduler mid-sweep, the standby takes over (`/readyz` names it), and the sweep ends
with exactly run_cap completed trials, the interrupted ones resumed from their checkpoints."""

from __future__ import annotations

import os
import signal

import httpx
import pytest
import yaml

from ktsweep.client import Client
from tests.e2e.conftest import REPO, SchedulerProcess, ServerProcess
from tests.service.conftest import empty_postgres_database
from tests.waiting import wait_for

EPOCHS = 6
RUN_CAP = 6


@pytest.fixture()
def postgres_url():
    """An empty PostgreSQL database of its own."""
    with empty_postgres_database("ktsweep_failover") as url:
        yield url


def failover_spec() -> dict:
    spec = yaml.safe_load((REPO / "examples" / "digits" / "sweep.yaml").read_text())
    spec.update(name="failover", run_cap=RUN_CAP, parallelism=2)
    spec["trial"]["fit"]["epochs"] = EPOCHS
    spec["callbacks"]["checkpoint"] = {"monitor": "val_loss", "save_best_only": False}
    return spec


def test_a_standby_scheduler_takes_over_when_the_active_one_is_killed(tmp_path, postgres_url):
    # A resumable checkpoint at every epoch; a standby tries to take over every second.
    env = {"KTSWEEP_CHECKPOINT_EVERY_S": "0", "KTSWEEP_TAKEOVER_POLL_S": "1"}
    api = ServerProcess(tmp_path, database_url=postgres_url, args=("--no-scheduler",), **env)
    schedulers: dict[int, SchedulerProcess] = {}
    try:
        # One after the other: each starts a local Ray of its own, and two starting at once on
        # a small machine can stall each other.
        for name, says in (("a", "now the active scheduler"), ("b", "standing by")):
            process = SchedulerProcess(tmp_path, postgres_url, api.url, name, **env).start()
            schedulers[process.pid] = process
            wait_for(lambda process=process, says=says: says in process.log(), timeout_s=300)
        api.start()  # ready once a scheduler is active

        def active_pid() -> int | None:
            answer = httpx.get(f"{api.url}/readyz", headers=api.auth, timeout=10)
            if answer.status_code != 200:
                return None
            return answer.json()["scheduler"]["pid"]

        first = wait_for(active_pid, timeout_s=120)
        assert first in schedulers
        (standby,) = set(schedulers) - {first}

        with Client(api.url) as client:
            sweep_id = client.submit(failover_spec())["id"]

            def mid_sweep():
                trials = client.trials(sweep_id)
                done = [t for t in trials if t["state"] == "completed"]
                running = [t for t in trials if t["state"] == "running" and t["epochs"] >= 2]
                return (done, running) if done and running else None

            completed_before, running_before = wait_for(mid_sweep, timeout_s=300)
            os.kill(first, signal.SIGKILL)
            schedulers[first].process.wait(timeout=30)

            try:
                wait_for(lambda: active_pid() == standby, timeout_s=120)
            except AssertionError:
                raise AssertionError(
                    f"the standby did not take over:\n{schedulers[standby].log()[-5000:]}"
                ) from None
            final = client.wait(sweep_id, timeout_s=400)
            trials = client.trials(sweep_id)
            details = {t["id"]: client.trial(t["id"]) for t in trials}
    finally:
        api.stop()
        for process in schedulers.values():
            process.stop()

    assert final["state"] == "finished"
    assert [t["state"] for t in trials] == ["completed"] * RUN_CAP
    for before in completed_before:
        after = details[before["id"]]
        assert after["metrics"] == before["metrics"]
        assert after["finished_at"] == before["finished_at"]
    for trial in details.values():
        assert [entry["step"] for entry in trial["history"]] == list(range(1, EPOCHS + 1))
    taken_over = schedulers[standby].log()
    assert "this process is now the active scheduler" in taken_over
    for interrupted in running_before:
        assert f"resuming trial {interrupted['id']} after a controller restart" in taken_over
