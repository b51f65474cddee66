"""A trial's life under the scheduler, without Ray: launch, start, finish, fail, lose, retry,
withdraw, pause, resume, cancel and restart recovery, on a real database with an in-memory
executor (tests/service/memory_executor.py). The same paths on Ray: test_lanes.py, test_stopping.py,
tests/e2e/test_controller_recovery.py."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from ktsweep.service import sweeps as store
from ktsweep.service.db import make_engine, make_sessions, migrate
from ktsweep.service.models import Sweep, Trial, utcnow
from ktsweep.service.scheduler import Scheduler
from ktsweep.service.spec import parse_spec
from tests.service.memory_executor import MemoryExecutor


@pytest.fixture()
def sessions(database_url):
    engine = make_engine(database_url)
    migrate(engine)
    yield make_sessions(engine)
    engine.dispose()


@pytest.fixture()
def executor():
    return MemoryExecutor()


@pytest.fixture()
def scheduler(sessions, executor, tmp_path):
    return make_scheduler(sessions, executor, tmp_path)


def make_scheduler(sessions, executor, tmp_path, **options: Any) -> Scheduler:
    return Scheduler(sessions, executor, api_url=None, artifact_dir=tmp_path, secret="s", **options)


def submit(sessions, method: str = "tpe", **changes: Any) -> str:
    """Store a sweep (`random` runs its trials in lanes, `tpe` does not)."""
    raw = {
        "name": "lifecycle",
        "method": method,
        "metric": {"name": "val_accuracy", "goal": "maximize"},
        "parameters": {"units": {"values": [16, 32, 64]}},
        "run_cap": 2,
        "parallelism": 1,
        "trial": {
            "hypermodel": "ktsweep.examples.digits:build_model",
            "data": "ktsweep.examples.digits:load_data",
            "fit": {"epochs": 1},
            "max_retries": changes.pop("max_retries", 0),
        },
        "wandb": {"mode": "disabled"},
        **changes,
    }
    with sessions() as session:
        return store.create_sweep(session, parse_spec(raw), raw).id


def trials(sessions, sweep_id: str) -> list[tuple[int, str, int]]:
    """(number, state, attempts) of every trial, by number."""
    with sessions() as session:
        rows = session.execute(
            select(Trial.number, Trial.state, Trial.attempts)
            .where(Trial.sweep_id == sweep_id)
            .order_by(Trial.number)
        )
        return [tuple(row) for row in rows]


def sweep_state(sessions, sweep_id: str) -> str:
    with sessions() as session:
        return session.scalar(select(Sweep.state).where(Sweep.id == sweep_id))


def test_a_launched_trial_runs_and_its_end_is_recorded(sessions, executor, scheduler):
    sweep = submit(sessions)
    scheduler.schedule_pending_trials()
    assert executor.running == [f"{sweep}-0"]
    assert trials(sessions, sweep) == [(0, "running", 1)]
    executor.finish(f"{sweep}-0", metrics={"val_accuracy": 0.7})
    assert trials(sessions, sweep) == [(0, "completed", 1)]
    with sessions() as session:
        assert session.get(Trial, f"{sweep}-0").objective == 0.7
    scheduler.schedule_pending_trials()
    assert executor.running == [f"{sweep}-1"]
    executor.finish(f"{sweep}-1")
    scheduler.schedule_pending_trials()
    assert trials(sessions, sweep) == [(0, "completed", 1), (1, "completed", 1)]
    assert sweep_state(sessions, sweep) == "finished"


def test_a_failed_trial_keeps_its_error_and_a_sweep_of_failures_fails(
    sessions, executor, scheduler
):
    sweep = submit(sessions, run_cap=1)
    scheduler.schedule_pending_trials()
    executor.finish(f"{sweep}-0", "failed", error="Traceback: boom")
    scheduler.schedule_pending_trials()
    with sessions() as session:
        trial = session.get(Trial, f"{sweep}-0")
        assert (trial.state, trial.error) == ("failed", "Traceback: boom")
        assert trial.finished_at is not None
    assert sweep_state(sessions, sweep) == "failed"


def test_a_lost_trial_is_retried_until_it_has_no_retries_left(sessions, executor, scheduler):
    sweep = submit(sessions, run_cap=1, max_retries=1)
    scheduler.schedule_pending_trials()
    executor.lose(f"{sweep}-0", epochs=3)
    # Relaunched at once, as the same trial, its second attempt.
    assert [spec.trial_id for spec in executor.launched] == [f"{sweep}-0"] * 2
    assert trials(sessions, sweep) == [(0, "running", 2)]
    executor.lose(f"{sweep}-0")
    assert trials(sessions, sweep) == [(0, "failed", 2)]
    with sessions() as session:
        assert "the worker died" in session.get(Trial, f"{sweep}-0").error
    scheduler.schedule_pending_trials()
    assert sweep_state(sessions, sweep) == "failed"


def test_a_trial_waiting_in_a_lane_starts_when_the_one_ahead_ends(sessions, executor, scheduler):
    sweep = submit(sessions, method="random", run_cap=3)
    scheduler.schedule_pending_trials()
    # One lane (parallelism 1): its running trial, and the next one waiting behind it.
    assert (executor.running, executor.waiting) == ([f"{sweep}-0"], [f"{sweep}-1"])
    assert trials(sessions, sweep) == [(0, "running", 1), (1, "pending", 1)]
    executor.finish(f"{sweep}-0")
    assert trials(sessions, sweep) == [(0, "completed", 1), (1, "running", 1)]
    scheduler.schedule_pending_trials()
    assert executor.waiting == [f"{sweep}-2"]


def test_pause_takes_back_waiting_trials_and_resume_launches_them(sessions, executor, scheduler):
    sweep = submit(sessions, method="random", run_cap=3)
    scheduler.schedule_pending_trials()
    with sessions() as session:
        scheduler.pause_sweep(session, sweep)
    executor.deliver()
    # Withdrawn: waiting again, and its launch did not count as an attempt.
    assert executor.waiting == []
    assert trials(sessions, sweep) == [(0, "running", 1), (1, "pending", 0)]
    executor.finish(f"{sweep}-0")  # a running trial of a paused sweep finishes
    scheduler.schedule_pending_trials()
    assert trials(sessions, sweep) == [(0, "completed", 1), (1, "pending", 0)]
    with sessions() as session:
        scheduler.resume_sweep(session, sweep)
    scheduler.schedule_pending_trials()
    assert executor.running == [f"{sweep}-1"]
    assert trials(sessions, sweep)[:2] == [(0, "completed", 1), (1, "running", 1)]


def test_cancel_stops_every_trial_and_they_stay_cancelled(sessions, executor, scheduler):
    sweep = submit(sessions, method="random", run_cap=3)
    scheduler.schedule_pending_trials()
    with sessions() as session:
        scheduler.cancel_sweep(session, sweep)
    assert sorted(executor.cancelled) == [f"{sweep}-0", f"{sweep}-1"]
    executor.deliver()  # their "cancelled" ends arrive
    assert trials(sessions, sweep) == [(0, "cancelled", 1), (1, "cancelled", 1)]
    scheduler.schedule_pending_trials()
    assert len(executor.launched) == 2 and sweep_state(sessions, sweep) == "cancelled"


def test_after_a_restart_running_trials_resume_without_counting_an_attempt(
    sessions, executor, scheduler, tmp_path
):
    sweep = submit(sessions, parallelism=2)
    scheduler.schedule_pending_trials()
    assert trials(sessions, sweep) == [(0, "running", 1), (1, "running", 1)]
    # A new controller: the old one's workers died with it.
    restarted = MemoryExecutor()
    make_scheduler(sessions, restarted, tmp_path).recover_running_trials()
    assert sorted(restarted.running) == [f"{sweep}-0", f"{sweep}-1"]
    assert all(spec.initial_epoch == 0 for spec in restarted.launched)  # nothing saved yet
    assert trials(sessions, sweep) == [(0, "running", 1), (1, "running", 1)]


def test_after_a_restart_a_paused_sweeps_waiting_trial_waits_for_resume(
    sessions, executor, scheduler, tmp_path
):
    sweep = submit(sessions, method="random", run_cap=3)
    scheduler.schedule_pending_trials()
    with sessions() as session:
        session.execute(update(Sweep).where(Sweep.id == sweep).values(state="paused"))
        session.commit()
    restarted = MemoryExecutor()
    again = make_scheduler(sessions, restarted, tmp_path)
    again.recover_running_trials()
    # The one that waited in a lane waits for resume, its launch not counted.
    assert restarted.waiting == [] and f"{sweep}-1" not in restarted.running
    assert trials(sessions, sweep)[1] == (1, "pending", 0)
    with sessions() as session:
        again.resume_sweep(session, sweep)
    again.schedule_pending_trials()
    assert f"{sweep}-1" in restarted.running + restarted.waiting
    assert trials(sessions, sweep)[1][2] == 1


def test_a_silent_trial_is_declared_lost_and_retried(sessions, executor, tmp_path):
    scheduler = make_scheduler(sessions, executor, tmp_path, heartbeat_timeout_s=60)
    sweep = submit(sessions, run_cap=1, max_retries=1)
    scheduler.schedule_pending_trials()
    long_ago = utcnow() - timedelta(minutes=5)
    with sessions() as session:
        session.execute(
            update(Trial)
            .where(Trial.id == f"{sweep}-0")
            .values(started_at=long_ago, heartbeat_at=long_ago)
        )
        session.commit()
    scheduler.declare_silent_trials_lost()
    assert executor.cancelled == [f"{sweep}-0"]
    assert trials(sessions, sweep) == [(0, "running", 2)]
    executor.deliver()  # the cancelled first attempt's end is not the trial's end
    assert trials(sessions, sweep) == [(0, "running", 2)]
    with sessions() as session:
        assert "declared lost" in session.get(Trial, f"{sweep}-0").error
