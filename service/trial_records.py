"""Trials as search methods see them (`TrialRecord`), read from the database."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ktsweep.service.models import Trial, TrialReport
from ktsweep.service.search import TrialRecord


def trial_record(trial: Trial, history: list[dict[str, Any]] | None = None) -> TrialRecord:
    """The trial as search methods see it, with `history` (one `{"step", "metrics"}` a step)."""
    return TrialRecord(
        number=trial.number,
        hyperparameters=trial.hyperparameters,
        state=trial.state,
        objective=trial.objective,
        epochs=trial.epochs,
        history=history or [],
        parent=int(trial.parent_id.rsplit("-", 1)[1]) if trial.parent_id else None,
        finished_at=trial.finished_at,
        metrics=trial.metrics or {},
    )


# What `suggest` sees of a trial, read as plain rows: no ORM objects per scheduling pass.
RECORD_COLUMNS = (
    Trial.number,
    Trial.hyperparameters,
    Trial.state,
    Trial.objective,
    Trial.epochs,
    Trial.parent_id,
    Trial.finished_at,
    Trial.metrics,
)


def record_of_row(row) -> TrialRecord:
    """A row of `RECORD_COLUMNS` as a `TrialRecord` (without its history)."""
    number, hyperparameters, state, objective, epochs, parent_id, finished_at, metrics = row
    return TrialRecord(
        number=number,
        hyperparameters=hyperparameters,
        state=state,
        objective=objective,
        epochs=epochs,
        parent=int(parent_id.rsplit("-", 1)[1]) if parent_id else None,
        finished_at=finished_at,
        metrics=metrics or {},
    )


def records_with_histories(session: Session, sweep_id: str) -> list[TrialRecord]:
    """Every trial of the sweep by number, each with its history."""
    trials = session.scalars(
        select(Trial).where(Trial.sweep_id == sweep_id).order_by(Trial.number)
    ).all()
    by_trial = histories(session, sweep_id)
    return [trial_record(trial, by_trial.get(trial.id, [])) for trial in trials]


def histories(session: Session, sweep_id: str) -> dict[str, list[dict[str, Any]]]:
    """Each trial's reports by step (`{"step", "metrics"}`), by trial id, for one sweep."""
    rows = session.execute(
        select(TrialReport.trial_id, TrialReport.step, TrialReport.metrics)
        .join(Trial, Trial.id == TrialReport.trial_id)
        .where(Trial.sweep_id == sweep_id)
        .order_by(TrialReport.step)
    )
    by_trial: dict[str, list[dict[str, Any]]] = {}
    for trial_id, step, metrics in rows:
        by_trial.setdefault(trial_id, []).append({"step": step, "metrics": metrics})
    return by_trial
