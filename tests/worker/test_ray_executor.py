"""`RayTrialExecutor` on a real local Ray: lost workers, resumes, timeouts, cancels."""

from __future__ import annotations

import os
import queue
import signal
from dataclasses import replace
from pathlib import Path

import pytest

from ktsweep.worker import RayTrialExecutor, TrialSpec
from ktsweep.worker.last_checkpoint import read_last_checkpoint, read_worker_info
from tests.waiting import wait_for

pytestmark = pytest.mark.usefixtures("local_ray")


def long_trial(tmp_path: Path, trial_id: str, **changes) -> TrialSpec:
    spec = TrialSpec(
        trial_id=trial_id,
        sweep_id="s",
        hyperparameters={"units": 32, "dropout": 0.1, "learning_rate": 0.01},
        hypermodel="ktsweep.examples.digits:build_model",
        data="ktsweep.examples.digits:load_data",
        # Small batches make each epoch take a while, so a test can act mid-trial.
        fit={"epochs": 40, "batch_size": 4},
        wandb={"project": "tests", "mode": "disabled"},
        checkpoint_dir=str(tmp_path / trial_id),
    )
    return replace(spec, **changes)


def launch(executor, spec):
    ended: queue.Queue = queue.Queue()
    executor.launch(spec, lambda trial_id, result: ended.put(result))
    return ended


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_killed_worker_ends_lost_and_the_retry_resumes_at_its_epoch(tmp_path):
    executor = RayTrialExecutor()
    spec = long_trial(tmp_path, "t-kill")
    ended = launch(executor, spec)
    path, epochs = wait_for(
        lambda: (
            (read_last_checkpoint(spec.checkpoint_dir) or (0, 0))[1] >= 2
            and read_last_checkpoint(spec.checkpoint_dir)
        )
    )
    os.kill(read_worker_info(spec.checkpoint_dir)["pid"], signal.SIGKILL)
    lost = ended.get(timeout=120)

    assert lost.state == "lost"
    assert "WorkerCrashedError" in lost.error
    assert Path(lost.checkpoint).name == "last.keras"
    assert lost.epochs >= epochs >= 2

    retry = replace(
        spec,
        resume_from=lost.checkpoint,
        initial_epoch=lost.epochs,
        fit={"epochs": lost.epochs + 2, "batch_size": 64},
    )
    result = launch(executor, retry).get(timeout=120)
    assert result.state == "completed", result.error
    assert [entry["step"] for entry in result.history] == [lost.epochs + 1, lost.epochs + 2]
    assert read_worker_info(spec.checkpoint_dir)["initial_epoch"] == lost.epochs


def test_a_trial_past_its_timeout_fails_with_a_clear_error(tmp_path):
    executor = RayTrialExecutor()
    result = launch(executor, long_trial(tmp_path, "t-slow", timeout_s=2)).get(timeout=120)
    assert result.state == "failed"
    assert "ran longer than its timeout_s (2 s)" in result.error


def test_cancel_kills_the_running_trial(tmp_path):
    executor = RayTrialExecutor()
    spec = long_trial(tmp_path, "t-cancel")
    ended = launch(executor, spec)
    pid = wait_for(lambda: (read_worker_info(spec.checkpoint_dir) or {}).get("pid"))
    executor.cancel(spec.trial_id)
    result = ended.get(timeout=60)
    assert result.state == "cancelled"
    wait_for(lambda: not pid_alive(pid), timeout_s=30)
    assert executor.running == []


def test_a_raising_trial_ends_failed_with_its_traceback(tmp_path):
    executor = RayTrialExecutor()
    spec = long_trial(tmp_path, "t-bad", hypermodel="ktsweep.examples.digits:no_such_builder")
    result = launch(executor, spec).get(timeout=120)
    assert result.state == "failed"
    assert "Traceback" in result.error and "no_such_builder" in result.error


def quick_trial(tmp_path: Path, trial_id: str, epochs: int = 2, epoch_s: float = 0.2) -> TrialSpec:
    """A trial of the sleeping model: `epochs` x `epoch_s` seconds, no computation."""
    return TrialSpec(
        trial_id=trial_id,
        sweep_id="s",
        hyperparameters={"epoch_s": epoch_s},
        hypermodel="ktsweep.examples.trivial:build_model",
        data="ktsweep.examples.trivial:load_data",
        fit={"epochs": epochs},
        wandb={"mode": "disabled"},
        callbacks={"metrics_logger": None},
        checkpoint_dir=str(tmp_path / trial_id),
        checkpoint_every_s=60.0,  # one save, after the last epoch
    )


def run_window(spec: TrialSpec) -> tuple[float, float]:
    """When the trial ran: its worker wrote `worker.json` first and `last.json` last."""
    folder = Path(spec.checkpoint_dir)
    return (folder / "worker.json").stat().st_mtime, (folder / "last.json").stat().st_mtime


class Lane:
    """Launches trials into one group and records what the executor calls back."""

    def __init__(self, executor, group: str, lanes: int):
        self.executor, self.group, self.lanes = executor, group, lanes
        self.started: list[str] = []
        self.ended: dict[str, queue.Queue] = {}

    def launch(self, spec: TrialSpec) -> bool:
        self.ended[spec.trial_id] = queue.Queue()
        return self.executor.launch(
            spec,
            lambda trial_id, result: self.ended[trial_id].put(result),
            group=self.group,
            lanes=self.lanes,
            on_start=self.started.append,
        )

    def result(self, trial_id: str, timeout_s: float = 120):
        return self.ended[trial_id].get(timeout=timeout_s)


def test_a_lane_runs_its_trials_one_after_another_each_starting_as_the_last_ends(tmp_path):
    executor = RayTrialExecutor()
    lane = Lane(executor, "lane-order", lanes=1)
    specs = [quick_trial(tmp_path, f"order-{n}") for n in range(3)]

    assert [lane.launch(spec) for spec in specs] == [True, False, False]
    assert not executor.has_idle_lane("lane-order", 1)

    results = [lane.result(spec.trial_id) for spec in specs]
    assert [result.state for result in results] == ["completed"] * 3
    assert lane.started == ["order-1", "order-2"]
    windows = [run_window(spec) for spec in specs]
    for earlier, later in zip(windows, windows[1:], strict=False):
        assert later[0] >= earlier[1]  # the next one started only after the last one ended
    assert executor.has_idle_lane("lane-order", 1)


def test_a_trial_waiting_behind_a_killed_one_still_runs(tmp_path):
    executor = RayTrialExecutor()
    lane = Lane(executor, "lane-kill", lanes=1)
    head = long_trial(tmp_path, "kill-head")
    behind = quick_trial(tmp_path, "kill-behind")
    assert lane.launch(head) and not lane.launch(behind)
    pid = wait_for(lambda: (read_worker_info(head.checkpoint_dir) or {}).get("pid"))
    os.kill(pid, signal.SIGKILL)

    assert lane.result(head.trial_id).state == "lost"
    assert lane.result(behind.trial_id).state == "completed"
    assert lane.started == ["kill-behind"]
    assert executor.running == []


def test_waiting_trials_can_be_cancelled_or_withdrawn_without_ever_starting(tmp_path):
    executor = RayTrialExecutor()
    lane = Lane(executor, "lane-take", lanes=1)
    head = quick_trial(tmp_path, "take-head", epochs=4, epoch_s=0.5)
    cancelled, withdrawn = quick_trial(tmp_path, "take-cancel"), quick_trial(tmp_path, "take-back")
    assert [lane.launch(spec) for spec in (head, cancelled, withdrawn)] == [True, False, False]

    executor.cancel(cancelled.trial_id)
    assert lane.result(cancelled.trial_id).state == "cancelled"
    assert executor.withdraw("lane-take") == ["take-back"]
    assert lane.result(withdrawn.trial_id).state == "withdrawn"

    assert lane.result(head.trial_id).state == "completed"
    assert lane.started == []
    for spec in (cancelled, withdrawn):
        assert read_worker_info(spec.checkpoint_dir) is None  # its worker never ran it


def test_taking_back_trials_the_moment_they_wait_leaves_the_process_running(tmp_path):
    """Trials cancelled or withdrawn straight after they were launched behind another, round
    after round. Waiting trials cancelled inside Ray (tasks whose argument is the result of the
    trial ahead) crashed the launching process within a few rounds; they now never reach Ray."""
    executor = RayTrialExecutor()
    for round_ in range(12):
        lane = Lane(executor, f"take-fast-{round_}", lanes=1)
        head = quick_trial(tmp_path, f"fast-head-{round_}", epochs=1, epoch_s=0.3)
        behind = [quick_trial(tmp_path, f"fast-{round_}-{n}", epoch_s=0.0) for n in (0, 1)]
        assert [lane.launch(spec) for spec in (head, *behind)] == [True, False, False]
        executor.cancel(behind[0].trial_id)
        assert executor.withdraw(lane.group) == [behind[1].trial_id]

        assert lane.result(head.trial_id).state == "completed"
        assert lane.result(behind[0].trial_id).state == "cancelled"
        assert lane.result(behind[1].trial_id).state == "withdrawn"
        assert lane.started == []
    assert executor.running == []
