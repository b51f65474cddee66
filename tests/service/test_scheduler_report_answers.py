"""Early-termination answers come from the database alone: any process answers them alike,
without a scheduler or an executor (`ReportAnswers`)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import select

from ktsweep.service import sweeps as store
from ktsweep.service.db import AsyncConnections, make_engine, make_sessions, migrate
from ktsweep.service.models import Sweep, Trial, TrialReport
from ktsweep.service.report_answers import ReportAnswers
from ktsweep.service.report_writer import ReportWriter
from tests.service.helpers import DIGITS_SPEC

HYPERBAND = {**DIGITS_SPEC, "early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 2}}


@pytest.fixture()
def engine(database_url):
    engine = make_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


def stored_sweep(sessions, spec: dict, finished: list[float], running: int) -> str:
    """A running sweep: trials that completed with one report each, then running ones."""
    with sessions() as session:
        sweep = Sweep(id=uuid.uuid4().hex[:12], name="answers", state="running", spec=spec)
        session.add(sweep)
        for number in range(len(finished) + running):
            done = number < len(finished)
            session.add(
                Trial(
                    id=f"{sweep.id}-{number}",
                    sweep_id=sweep.id,
                    number=number,
                    state="completed" if done else "running",
                    hyperparameters={},
                    metrics={"val_accuracy": finished[number]} if done else {},
                    attempts=1,
                )
            )
            if done:
                metrics = {"val_accuracy": finished[number]}
                session.add(TrialReport(trial_id=f"{sweep.id}-{number}", step=1, metrics=metrics))
        session.commit()
        return sweep.id


def report(sessions, trial_id: str, value: float) -> None:
    with sessions() as session:
        store.record_report(session, trial_id, 1, {"val_accuracy": value})


def test_any_process_answers_a_report_alike_from_the_database(engine):
    sessions = make_sessions(engine)
    sweep = stored_sweep(sessions, HYPERBAND, finished=[0.9, 0.8], running=2)
    poor, good = f"{sweep}-2", f"{sweep}-3"
    report(sessions, poor, 0.1)
    report(sessions, good, 0.95)
    one, other = ReportAnswers(sessions), ReportAnswers(sessions)
    assert [one.decide(poor), one.decide(good)] == ["stop", "continue"]
    assert [other.decide(good), other.decide(poor)] == ["continue", "stop"]
    assert one.decides_on_reports == other.decides_on_reports == {sweep: True}


def test_a_process_answers_with_what_was_stored_since_it_last_answered(engine):
    sessions = make_sessions(engine)
    sweep = stored_sweep(sessions, HYPERBAND, finished=[], running=3)
    answers = ReportAnswers(sessions)
    report(sessions, f"{sweep}-0", 0.5)
    assert answers.decide(f"{sweep}-0") == "continue"  # nothing to compare with yet
    # Two trials end far better, as another process records it.
    for number in (1, 2):
        report(sessions, f"{sweep}-{number}", 0.99)
        with sessions() as session:
            session.get(Trial, f"{sweep}-{number}").state = "completed"
            session.commit()
    report(sessions, f"{sweep}-0", 0.5)
    assert answers.decide(f"{sweep}-0") == "stop"


def test_a_sweep_without_a_rule_never_costs_a_decision(engine):
    sessions = make_sessions(engine)
    sweep = stored_sweep(sessions, DIGITS_SPEC, finished=[0.9], running=1)
    answers = ReportAnswers(sessions)
    with sessions() as session:
        assert answers.reports_need_answers(session.get(Sweep, sweep)) is False
    assert answers.decide(f"{sweep}-1") == "continue"


def test_an_answer_stores_the_report_through_the_one_store(engine):
    sessions = make_sessions(engine)
    sweep = stored_sweep(sessions, HYPERBAND, finished=[0.9, 0.8], running=1)
    answers = ReportAnswers(sessions)

    async def answer() -> str:
        connections = AsyncConnections(engine, pool_size=1)
        writer = ReportWriter(connections)
        try:
            return await answers.answer(
                writer, store.ReportIn(f"{sweep}-2", 1, {"val_accuracy": 0.1})
            )
        finally:
            await writer.close()
            await connections.dispose()

    assert asyncio.run(answer()) == "stop"
    with sessions() as session:
        stored = session.execute(
            select(TrialReport.step, TrialReport.metrics).where(
                TrialReport.trial_id == f"{sweep}-2"
            )
        ).all()
        assert [tuple(row) for row in stored] == [(1, {"val_accuracy": 0.1})]
        assert session.get(Trial, f"{sweep}-2").objective == 0.1
