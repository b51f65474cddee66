"""What a scheduling pass reads: the trials `suggest` sees stay exactly the database's, though
finished trials are read once and kept; and the API's database connections open warm."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from sqlalchemy import update

from ktsweep.service import sweeps as store
from ktsweep.service.db import AsyncConnections, make_engine, make_sessions, migrate
from ktsweep.service.models import Sweep, Trial, utcnow
from ktsweep.service.scheduler import Scheduler, _records_with_histories
from ktsweep.worker.ray_runner import RayTrialExecutor

SPEC = {
    "name": "reads",
    "method": "random",
    "metric": {"name": "loss", "goal": "minimize"},
    "parameters": {"units": {"values": [8, 16]}},
    "run_cap": 50,
    "trial": {
        "hypermodel": "ktsweep.examples.trivial:build_model",
        "data": "ktsweep.examples.trivial:load_data",
    },
}


def seeded(database_url: str, states: list[str]) -> tuple[object, str]:
    engine = make_engine(database_url)
    migrate(engine)
    sessions = make_sessions(engine)
    sweep_id = uuid.uuid4().hex[:12]
    with sessions() as session:
        session.add(Sweep(id=sweep_id, name="reads", state="paused", spec=SPEC))
        session.flush()
        for number, state in enumerate(states):
            add_trial(session, sweep_id, number, state)
        session.commit()
    return sessions, sweep_id


def add_trial(session, sweep_id: str, number: int, state: str) -> None:
    finished = state not in ("pending", "running")
    session.add(
        Trial(
            id=f"{sweep_id}-{number}",
            sweep_id=sweep_id,
            number=number,
            state=state,
            hyperparameters={"units": 8 + number},
            metrics={"loss": 1.0 / (number + 1)} if finished else {},
            objective=1.0 / (number + 1) if finished else None,
            epochs=3 if finished else 1,
            attempts=1,
            finished_at=utcnow() if finished else None,
        )
    )


def as_seen(records) -> list[tuple]:
    return [(r.number, r.state, r.objective, r.epochs, r.hyperparameters["units"]) for r in records]


def test_scheduling_reads_match_the_database_as_trials_end_and_change(database_url, tmp_path):
    sessions, sweep_id = seeded(database_url, ["completed", "running", "failed", "running"])
    scheduler = Scheduler(sessions, RayTrialExecutor(), None, Path(tmp_path))

    def check() -> list[tuple]:
        with sessions() as session:
            seen = as_seen(scheduler._sweep_trials(session, sweep_id))
            truth = as_seen(_records_with_histories(session, sweep_id))
        assert seen == truth
        return seen

    assert [state for _, state, *_ in check()] == ["completed", "running", "failed", "running"]
    # A running trial ends (as the scheduler records it), another reports an epoch.
    with sessions() as session:
        store.record_trial_result(
            session,
            f"{sweep_id}-1",
            {"state": "completed", "metrics": {"loss": 0.25}, "epochs": 3, "history": []},
        )
        session.execute(update(Trial).where(Trial.id == f"{sweep_id}-3").values(epochs=2))
        session.commit()
    seen = check()
    assert seen[1][1:3] == ("completed", 0.25)
    assert seen[3][3] == 2
    # Trials written behind the scheduler's back: a new one, and a finished one rewritten.
    with sessions() as session:
        add_trial(session, sweep_id, 4, "stopped")
        session.execute(update(Trial).where(Trial.id == f"{sweep_id}-0").values(state="cancelled"))
        session.commit()
    seen = check()
    assert [state for _, state, *_ in seen] == [
        "cancelled",
        "completed",
        "failed",
        "running",
        "stopped",
    ]


def test_result_fills_in_the_missing_history_once(database_url):
    sessions, sweep_id = seeded(database_url, ["running"])
    trial_id = f"{sweep_id}-0"
    with sessions() as session:
        store.record_report(session, trial_id, 1, {"loss": 0.9})
        store.record_report(session, trial_id, 2, {"loss": 0.8})
    history = [
        {"step": 1, "metrics": {"loss": 0.9}},
        {"step": 2, "metrics": {"loss": 0.8}},
        {"step": 3, "metrics": {"loss": 0.7}},
    ]
    with sessions() as session:
        trial, recorded = store.record_trial_result(
            session,
            trial_id,
            {"state": "completed", "metrics": {"loss": 0.7}, "epochs": 3, "history": history},
        )
        assert (trial.state, trial.objective, trial.epochs) == ("completed", 0.7, 3)
        assert recorded == history
        assert store.trial_history(session, trial) == history


def test_async_connections_open_warm(database_url):
    engine = make_engine(database_url)
    migrate(engine)
    connections = AsyncConnections(engine, pool_size=4)
    warmed = []

    async def warm_up(fetch):
        await store.warm_up_reads(fetch)
        warmed.append(True)

    async def scenario():
        await connections.open(warm_up=warm_up)
        try:
            if connections.runs_statements_on_the_loop:  # PostgreSQL: a pool of open connections
                assert len(warmed) == 4
                assert connections._engine.pool.checkedin() == 4
            else:  # SQLite: nothing to open
                assert warmed == []
            # The pool still serves reads afterwards.
            rows = await connections.read(lambda fetch: fetch(store._READ_SPEC, {"sweep_id": "-"}))
            assert list(rows) == []
        finally:
            await connections.dispose()

    asyncio.run(scenario())
    engine.dispose()
