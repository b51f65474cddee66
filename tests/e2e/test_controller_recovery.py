"""Kill -9 the controller mid-sweep, start it again: nothing completed is lost, nothing stays
running, and the sweep ends with exactly run_cap trials."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import yaml

from ktsweep.client import Client
from tests.e2e.conftest import ServerProcess
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 8


def recovery_spec() -> dict:
    spec = yaml.safe_load((REPO / "examples" / "digits" / "sweep.yaml").read_text())
    spec.update(name="recovery", run_cap=4, parallelism=2)
    spec["trial"]["fit"]["epochs"] = EPOCHS
    spec["callbacks"]["checkpoint"] = {"monitor": "val_loss", "save_best_only": False}
    return spec


def test_sigkill_mid_sweep_then_restart_keeps_every_invariant(tmp_path):
    first = ServerProcess(tmp_path).start()
    with Client(first.url) as api:
        sweep_id = api.submit(recovery_spec())["id"]

        def mid_sweep():
            trials = api.trials(sweep_id)
            done = [t for t in trials if t["state"] == "completed"]
            running = [t for t in trials if t["state"] == "running" and t["epochs"] >= 2]
            return (done, running) if done and running else None

        completed_before, running_before = wait_for(mid_sweep, timeout_s=300)
    os.kill(first.process.pid, signal.SIGKILL)
    first.process.wait(timeout=30)

    second = ServerProcess(tmp_path).start()  # same database and artifact folder
    try:
        with Client(second.url) as api:
            final = api.wait(sweep_id, timeout_s=400)
            trials = api.trials(sweep_id)
            details = {t["id"]: api.trial(t["id"]) for t in trials}
    finally:
        second.stop()

    assert final["state"] == "finished"
    assert len(trials) == 4
    assert [t["state"] for t in trials] == ["completed"] * 4
    for before in completed_before:
        after = details[before["id"]]
        assert after["metrics"] == before["metrics"]
        assert after["finished_at"] == before["finished_at"]
    for trial in details.values():
        assert [entry["step"] for entry in trial["history"]] == list(range(1, EPOCHS + 1))
    for interrupted in running_before:
        assert f"resuming trial {interrupted['id']} after a controller restart" in second.log()
