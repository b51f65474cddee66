"""Random and grid sweeps keep each slot's next trial waiting in Ray behind its running one
(lanes): never more than `parallelism` running, pause takes the waiting ones back, and a
reached target drops those that never started. Real controller, real Ray, real database."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.service.helpers import controller
from tests.waiting import wait_for


@pytest.fixture()
def api(database_url, tmp_path):
    with controller(database_url, tmp_path) as client:
        client.artifact_dir = tmp_path / "artifacts"
        yield client


def sleeping_sweep(run_cap: int, epochs: int, epoch_s: float, **changes) -> dict:
    return {
        "name": "lanes",
        "method": "random",
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"epoch_s": {"value": epoch_s}},
        "run_cap": run_cap,
        "parallelism": 2,
        "trial": {
            "hypermodel": "ktsweep.examples.trivial:build_model",
            "data": "ktsweep.examples.trivial:load_data",
            "fit": {"epochs": epochs},
        },
        "wandb": {"mode": "disabled"},
        "callbacks": {"metrics_logger": None},
        **changes,
    }


def trials(api, sweep_id: str) -> list[dict]:
    return api.get(f"/api/v1/sweeps/{sweep_id}/trials", params={"limit": 200}).json()["items"]


def queued(listed: list[dict]) -> list[dict]:
    """Trials launched into a lane, waiting there for the running one ahead of them."""
    return [t for t in listed if t["state"] == "pending" and t["attempts"] > 0]


def run_window(api, trial: dict) -> tuple[float, float] | None:
    """When the trial's worker ran it (its first and last files), or None if it never did."""
    folder = Path(api.artifact_dir) / "checkpoints" / trial["sweep_id"] / trial["id"]
    if not (folder / "worker.json").exists():
        return None
    return (folder / "worker.json").stat().st_mtime, (folder / "last.json").stat().st_mtime


def wait_finished(api, sweep_id: str, timeout_s: float = 180) -> dict:
    return wait_for(
        lambda: (
            (sweep := api.get(f"/api/v1/sweeps/{sweep_id}").json())["state"] == "finished" and sweep
        ),
        timeout_s=timeout_s,
    )


def test_each_slot_holds_its_next_trial_and_never_more_than_parallelism_run(api):
    sweep = api.post("/api/v1/sweeps", json=sleeping_sweep(6, epochs=2, epoch_s=0.3)).json()
    most_running, saw_queued = 0, False
    while api.get(f"/api/v1/sweeps/{sweep['id']}").json()["state"] == "running":
        listed = trials(api, sweep["id"])
        most_running = max(most_running, sum(t["state"] == "running" for t in listed))
        saw_queued = saw_queued or len(queued(listed)) == 2
        time.sleep(0.05)

    listed = trials(api, sweep["id"])
    assert [t["state"] for t in listed] == ["completed"] * 6
    assert all(t["attempts"] == 1 for t in listed)
    assert most_running <= 2 and saw_queued
    windows = [run_window(api, t) for t in listed]
    for start, _ in windows:  # at no trial's start did more than two run
        assert sum(begin <= start < end for begin, end in windows) <= 2


def test_pause_takes_back_the_waiting_trials_and_resume_runs_them(api):
    sweep = api.post("/api/v1/sweeps", json=sleeping_sweep(4, epochs=3, epoch_s=0.5)).json()
    wait_for(lambda: len(queued(trials(api, sweep["id"]))) == 2)
    assert api.post(f"/api/v1/sweeps/{sweep['id']}/pause").json()["state"] == "paused"

    def settled():
        listed = trials(api, sweep["id"])
        done = [t for t in listed if t["state"] == "completed"]
        taken_back = [t for t in listed if t["state"] == "pending" and t["attempts"] == 0]
        return len(done) == 2 and len(taken_back) == 2 and listed

    listed = wait_for(settled, timeout_s=120)
    time.sleep(1.0)  # long enough for a trial to start, were the pause not kept
    assert trials(api, sweep["id"]) == listed
    waiting = [t for t in listed if t["state"] == "pending"]
    assert all(t["started_at"] is None and run_window(api, t) is None for t in waiting)

    assert api.post(f"/api/v1/sweeps/{sweep['id']}/resume").json()["state"] == "running"
    finished = wait_finished(api, sweep["id"])
    assert finished["trial_counts"]["completed"] == 4
    assert all(t["attempts"] == 1 for t in trials(api, sweep["id"]))


def test_a_reached_target_drops_the_trials_that_never_started(api):
    # Every trial's loss is 1 / epochs = 0.5: the first trial to end reaches the target.
    spec = sleeping_sweep(10, epochs=2, epoch_s=0.4)
    spec["metric"] = {"name": "loss", "goal": "minimize", "target": 0.6}
    sweep = api.post("/api/v1/sweeps", json=spec).json()
    finished = wait_finished(api, sweep["id"])

    listed = trials(api, sweep["id"])
    assert 2 <= len(listed) < 10
    assert [t["number"] for t in listed] == list(range(len(listed)))
    assert {t["state"] for t in listed} == {"completed"}
    assert finished["trial_counts"]["pending"] == 0
