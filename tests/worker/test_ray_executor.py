"""`RayTrialExecutor` on a real local Ray: lost workers, resumes, timeouts, cancels."""

from __future__ import annotations

import os
import queue
import signal
from dataclasses import replace
from pathlib import Path

import pytest

from tests.waiting import wait_for
from worker import RayTrialExecutor, TrialSpec
from worker.last_checkpoint import read_last_checkpoint, read_worker_info

pytestmark = pytest.mark.usefixtures("local_ray")


def long_trial(tmp_path: Path, trial_id: str, **changes) -> TrialSpec:
    spec = TrialSpec(
        trial_id=trial_id,
        sweep_id="s",
        hyperparameters={"units": 32, "dropout": 0.1, "learning_rate": 0.01},
        hypermodel="examples.digits:build_model",
        data="examples.digits:load_data",
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
    spec = long_trial(tmp_path, "t-bad", hypermodel="examples.digits:no_such_builder")
    result = launch(executor, spec).get(timeout=120)
    assert result.state == "failed"
    assert "Traceback" in result.error and "no_such_builder" in result.error
