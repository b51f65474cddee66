"""The one report store: single reports and batches, on SQLite and PostgreSQL, give the same rows;
so does the hand-written PostgreSQL statement of the async report path."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import select

from ktsweep.service import sweeps as store
from ktsweep.service.db import AsyncConnections, make_engine, make_sessions, migrate
from ktsweep.service.models import Sweep, SweepState, Trial, TrialReport
from tests.service.conftest import require_postgres
from tests.service.helpers import DIGITS_SPEC

# Trial number -> its state before the reports.
STATES = {0: "running", 1: "pending", 2: "completed", 3: "stopped", 4: "running"}


def reports_for(sweep_id: str) -> list[store.ReportIn]:
    """Reports of every kind: new steps, an older step, a step again, ended trials, a trial
    that does not exist, a checkpoint, a value that is no number."""
    trial = lambda number: f"{sweep_id}-{number}"  # noqa: E731
    return [
        store.ReportIn(trial(0), 2, {"val_accuracy": 0.5}, checkpoint="ckpt/2"),
        store.ReportIn(trial(2), 5, {"val_accuracy": 0.1}),
        store.ReportIn(f"{sweep_id}-99", 1, {}),
        store.ReportIn(trial(0), 1, {"val_accuracy": 0.4}),  # an older step: history only
        store.ReportIn(trial(1), 1, {"val_accuracy": 0.3}),  # pending: it starts
        store.ReportIn(trial(3), 1, {"val_accuracy": 0.2}),  # stopped: "stop", nothing stored
        store.ReportIn(trial(0), 2, {"val_accuracy": 0.6}),  # the same step again: replaces it
        store.ReportIn(trial(4), 3, {"val_accuracy": None, "loss": 0.7}),
        store.ReportIn(trial(4), 4, {"val_accuracy": 0.8}, checkpoint="ckpt/4"),
    ]


@pytest.fixture()
def engine(database_url):
    engine = make_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


def stored_sweep(engine) -> str:
    with make_sessions(engine)() as session:
        sweep = Sweep(
            id=uuid.uuid4().hex[:12], name="reports", state=SweepState.RUNNING.value,
            spec=DIGITS_SPEC,
        )  # fmt: skip
        session.add(sweep)
        for number, state in STATES.items():
            session.add(
                Trial(
                    id=f"{sweep.id}-{number}",
                    sweep_id=sweep.id,
                    number=number,
                    state=state,
                    hyperparameters={},
                    metrics={"val_accuracy": 0.9} if state == "completed" else {},
                    epochs=1 if number == 4 else 0,
                    attempts=1,
                )
            )
        session.commit()
        return sweep.id


def rows_of(engine, sweep_id: str) -> tuple[dict, list]:
    """What the store wrote for the sweep, by trial number (timestamps: set or not)."""
    with engine.connect() as connection:
        trials = {
            row.number: (
                row.state,
                row.metrics,
                row.objective,
                row.epochs,
                row.checkpoint,
                row.started_at is not None,
                row.heartbeat_at is not None,
            )
            for row in connection.execute(select(Trial.__table__).where(Trial.sweep_id == sweep_id))
        }
        reports = connection.execute(
            select(Trial.number, TrialReport.step, TrialReport.metrics)
            .join(Trial, Trial.id == TrialReport.trial_id)
            .where(Trial.sweep_id == sweep_id)
            .order_by(Trial.number, TrialReport.step)
        ).all()
    return trials, [tuple(row) for row in reports]


def answers(outcomes) -> list[tuple[str, str]]:
    """Each outcome's kind, and its action where it is one."""
    return [
        (
            type(outcome).__name__,
            outcome.action if isinstance(outcome, store.ReportRecorded) else "",
        )
        for outcome in outcomes
    ]


def expected_rows() -> tuple[dict, list]:
    trials = {
        0: ("running", {"val_accuracy": 0.6}, 0.6, 2, "ckpt/2", False, True),
        1: ("running", {"val_accuracy": 0.3}, 0.3, 1, None, True, True),
        2: ("completed", {"val_accuracy": 0.9}, None, 0, None, False, False),
        3: ("stopped", {}, None, 0, None, False, False),
        4: ("running", {"val_accuracy": 0.8}, 0.8, 4, "ckpt/4", False, True),
    }
    reports = [
        (0, 1, {"val_accuracy": 0.4}),
        (0, 2, {"val_accuracy": 0.6}),
        (1, 1, {"val_accuracy": 0.3}),
        (4, 3, {"val_accuracy": None, "loss": 0.7}),
        (4, 4, {"val_accuracy": 0.8}),
    ]
    return trials, reports


EXPECTED_OUTCOMES = [
    ("ReportRecorded", "continue"),
    ("ConflictError", ""),
    ("NotFoundError", ""),
    ("ReportRecorded", "continue"),
    ("ReportRecorded", "continue"),
    ("ReportRecorded", "stop"),
    ("ReportRecorded", "continue"),
    ("ReportRecorded", "continue"),
    ("ReportRecorded", "continue"),
]


def test_a_batch_stores_each_report_and_answers_each_for_itself(engine):
    sweep_id = stored_sweep(engine)
    with engine.begin() as connection:
        outcomes = store.record_reports(connection, reports_for(sweep_id), {})
    assert answers(outcomes) == EXPECTED_OUTCOMES
    assert rows_of(engine, sweep_id) == expected_rows()


def test_single_reports_store_the_same_rows_as_one_batch(engine):
    batch, one_by_one = stored_sweep(engine), stored_sweep(engine)
    with engine.begin() as connection:
        store.record_reports(connection, reports_for(batch), {})
    sessions = make_sessions(engine)
    outcomes = []
    for report in reports_for(one_by_one):
        with sessions() as session:
            try:
                outcomes.append(
                    store.ReportRecorded(
                        store.record_report(
                            session, report.trial_id, report.step, report.metrics,
                            report.checkpoint,
                        ),
                        one_by_one,
                    )
                )  # fmt: skip
            except (store.NotFoundError, store.ConflictError) as exc:
                outcomes.append(exc)
    assert answers(outcomes) == EXPECTED_OUTCOMES
    assert rows_of(engine, one_by_one) == rows_of(engine, batch) == expected_rows()


def test_a_report_of_a_cancelled_sweep_is_stored_and_answered_stop(engine):
    sweep_id = stored_sweep(engine)
    with make_sessions(engine)() as session:
        session.get(Sweep, sweep_id).state = SweepState.CANCELLED.value
        session.commit()
    with engine.begin() as connection:
        (outcome,) = store.record_reports(
            connection, [store.ReportIn(f"{sweep_id}-0", 1, {"val_accuracy": 0.2})], {}
        )
    assert outcome == store.ReportRecorded("stop", sweep_id)
    assert rows_of(engine, sweep_id)[1] == [(0, 1, {"val_accuracy": 0.2})]


def test_the_postgresql_statement_stores_the_same_rows_as_the_core_store(engine):
    if engine.dialect.name != "postgresql":
        require_postgres()
        pytest.skip("the hand-written statement is PostgreSQL's")
    core, hand_written = stored_sweep(engine), stored_sweep(engine)
    with engine.begin() as connection:
        core_outcomes = store.record_reports(connection, reports_for(core), {})

    async def write() -> list:
        connections = AsyncConnections(engine, pool_size=1)
        try:
            return await connections.run(
                store.record_reports_in_one_statement, reports_for(hand_written)
            )
        finally:
            await connections.dispose()

    outcomes = asyncio.run(write())
    assert answers(outcomes) == answers(core_outcomes)
    assert rows_of(engine, hand_written) == rows_of(engine, core) == expected_rows()
