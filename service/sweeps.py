"""What the controller does with sweeps and trials, apart from HTTP: create, read, record.

Routes call these functions; the scheduler calls them too. Nothing here knows the search method.
"""

from __future__ import annotations

import base64
import json
import math
import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.models import (
    ACTIVE_TRIAL_STATES,
    Sweep,
    SweepState,
    Trial,
    TrialReport,
    TrialState,
    utcnow,
)
from service.spec import SweepSpec, parse_spec


class NotFoundError(LookupError):
    """A sweep or trial id that does not exist."""


class ConflictError(RuntimeError):
    """A request that the resource's current state does not allow."""


def new_sweep_id() -> str:
    return uuid.uuid4().hex[:12]


def create_sweep(session: Session, spec: SweepSpec, raw_spec: dict[str, Any]) -> Sweep:
    """Store a validated sweep; it starts `running` with no trials."""
    sweep_id = new_sweep_id()
    sweep = Sweep(
        id=sweep_id,
        name=spec.name or f"sweep-{sweep_id[:6]}",
        state=SweepState.RUNNING.value,
        spec=raw_spec,
    )
    session.add(sweep)
    session.commit()
    return sweep


def sweep_spec(sweep: Sweep) -> SweepSpec:
    return parse_spec(sweep.spec)


def get_sweep(session: Session, sweep_id: str) -> Sweep:
    sweep = session.get(Sweep, sweep_id)
    if sweep is None:
        raise NotFoundError(f"no sweep with id '{sweep_id}'; list sweeps with GET /api/v1/sweeps.")
    return sweep


def get_trial(session: Session, trial_id: str) -> Trial:
    trial = session.get(Trial, trial_id)
    if trial is None:
        raise NotFoundError(
            f"no trial with id '{trial_id}'; list a sweep's trials with "
            "GET /api/v1/sweeps/{id}/trials."
        )
    return trial


def trial_counts(session: Session, sweep_id: str) -> dict[str, int]:
    rows = session.execute(
        select(Trial.state, func.count()).where(Trial.sweep_id == sweep_id).group_by(Trial.state)
    ).all()
    counts = {state.value: 0 for state in TrialState}
    counts.update({state: count for state, count in rows})
    counts["total"] = sum(count for _, count in rows)
    return counts


def metric_goal(sweep: Sweep) -> tuple[str | None, str]:
    metric = sweep.spec.get("metric") or {}
    return metric.get("name"), metric.get("goal", "minimize")


def best_trial(session: Session, sweep: Sweep) -> Trial | None:
    """The finished trial with the best metric by the sweep's goal (stopped trials count too)."""
    name, goal = metric_goal(sweep)
    if name is None:
        return None
    order = Trial.objective.desc() if goal == "maximize" else Trial.objective.asc()
    query = (
        select(Trial)
        .where(
            Trial.sweep_id == sweep.id,
            Trial.objective.is_not(None),
            Trial.state.in_([TrialState.COMPLETED.value, TrialState.STOPPED.value]),
        )
        .order_by(order, Trial.number)
        .limit(1)
    )
    return session.scalars(query).first()


def list_sweeps(
    session: Session, state: str | None = None, cursor: str | None = None, limit: int = 50
) -> tuple[list[Sweep], str | None]:
    """Sweeps newest first, `limit` at a time; the cursor is the last (created_at, id) seen."""
    query = select(Sweep).order_by(Sweep.created_at.desc(), Sweep.id.desc())
    if state:
        query = query.where(Sweep.state == state)
    if cursor:
        created_at, sweep_id = _decode_cursor(cursor)
        anchor = session.get(Sweep, sweep_id)
        if anchor is not None:
            query = query.where(
                (Sweep.created_at < anchor.created_at)
                | ((Sweep.created_at == anchor.created_at) & (Sweep.id < anchor.id))
            )
    sweeps = list(session.scalars(query.limit(limit + 1)))
    next_cursor = None
    if len(sweeps) > limit:
        sweeps = sweeps[:limit]
        next_cursor = _encode_cursor([sweeps[-1].created_at.isoformat(), sweeps[-1].id])
    return sweeps, next_cursor


def list_trials(
    session: Session,
    sweep: Sweep,
    state: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[Trial], str | None]:
    """A sweep's trials by number, `limit` at a time; the cursor is the last number seen."""
    query = select(Trial).where(Trial.sweep_id == sweep.id).order_by(Trial.number)
    if state:
        query = query.where(Trial.state == state)
    if cursor:
        (after,) = _decode_cursor(cursor)
        query = query.where(Trial.number > int(after))
    trials = list(session.scalars(query.limit(limit + 1)))
    next_cursor = None
    if len(trials) > limit:
        trials = trials[:limit]
        next_cursor = _encode_cursor([trials[-1].number])
    return trials, next_cursor


class CursorError(ValueError):
    """A pagination cursor this service did not hand out."""


def _encode_cursor(parts: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode()


def _decode_cursor(cursor: str) -> list[Any]:
    try:
        parts = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except ValueError:
        raise CursorError(
            "the cursor is not one this service handed out; pass `next_cursor` from the "
            "previous page as it is, or leave it out for the first page."
        ) from None
    if not isinstance(parts, list):
        raise CursorError("the cursor is not one this service handed out.")
    return parts


def _objective(metrics: dict[str, Any], name: str | None) -> float | None:
    value = metrics.get(name) if name else None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def record_report(
    session: Session,
    trial_id: str,
    step: int,
    metrics: dict[str, float | None],
    checkpoint: str | None = None,
) -> str:
    """Store one step's metrics for a running trial; returns "continue" or "stop"."""
    trial = get_trial(session, trial_id)
    if trial.state in (TrialState.CANCELLED.value, TrialState.STOPPED.value):
        return "stop"
    if trial.state not in ACTIVE_TRIAL_STATES:
        raise ConflictError(f"trial '{trial_id}' is {trial.state}; it takes no more reports.")
    existing = session.scalars(
        select(TrialReport).where(TrialReport.trial_id == trial_id, TrialReport.step == step)
    ).first()
    if existing is None:
        session.add(TrialReport(trial_id=trial_id, step=step, metrics=metrics))
    else:
        existing.metrics = metrics
    if step >= trial.epochs:
        trial.metrics = metrics
        trial.epochs = step
        trial.objective = _objective(metrics, metric_goal(trial.sweep)[0])
    if checkpoint:
        trial.checkpoint = checkpoint
    if trial.state == TrialState.PENDING.value:
        trial.state = TrialState.RUNNING.value
        trial.started_at = trial.started_at or utcnow()
    sweep_state = trial.sweep.state
    session.commit()
    return "stop" if sweep_state == SweepState.CANCELLED.value else "continue"


def record_trial_result(session: Session, trial_id: str, result: dict[str, Any]) -> Trial:
    """Store how a trial ended, filling in any per-step report that never arrived."""
    trial = get_trial(session, trial_id)
    known_steps = {
        step
        for (step,) in session.execute(
            select(TrialReport.step).where(TrialReport.trial_id == trial_id)
        )
    }
    for entry in result.get("history") or []:
        if entry["step"] not in known_steps:
            session.add(
                TrialReport(trial_id=trial_id, step=entry["step"], metrics=entry["metrics"])
            )
    if trial.state != TrialState.CANCELLED.value:
        trial.state = result["state"]
    if result.get("metrics"):
        trial.metrics = result["metrics"]
        trial.objective = _objective(result["metrics"], metric_goal(trial.sweep)[0])
    trial.epochs = max(trial.epochs, result.get("epochs") or 0)
    trial.wandb = result.get("wandb")
    trial.checkpoint = result.get("checkpoint") or trial.checkpoint
    trial.error = result.get("error")
    trial.finished_at = utcnow()
    session.commit()
    return trial


def trial_history(session: Session, trial: Trial) -> list[dict[str, Any]]:
    reports = session.scalars(
        select(TrialReport).where(TrialReport.trial_id == trial.id).order_by(TrialReport.step)
    )
    return [{"step": report.step, "metrics": report.metrics} for report in reports]
