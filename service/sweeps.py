"""What the controller does with sweeps and trials, apart from HTTP: create, read, record.

Routes call these functions; the scheduler calls them too. Nothing here knows the search method.
"""

from __future__ import annotations

import base64
import json
import math
import uuid
from typing import Any

from sqlalchemy import func, select, update
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
        parts = _decode_cursor(cursor)
        if len(parts) != 2 or not all(isinstance(part, str) for part in parts):
            raise CursorError("this cursor belongs to another listing; leave it out.")
        anchor = session.get(Sweep, parts[1])
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
    order: str = "number",
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[Trial], str | None]:
    """A sweep's trials, `limit` at a time.

    `order="number"` lists them in submission order; `order="metric"` best first by the sweep's
    goal, trials without a metric last. The cursor holds the position after the last one seen.
    """
    query = select(Trial).where(Trial.sweep_id == sweep.id)
    if state:
        query = query.where(Trial.state == state)
    if order == "metric":
        _, goal = metric_goal(sweep)
        missing_last = Trial.objective.is_(None).asc()
        by_metric = Trial.objective.desc() if goal == "maximize" else Trial.objective.asc()
        query = query.order_by(missing_last, by_metric, Trial.number)
        offset = _cursor_int(cursor, "metric")
        trials = list(session.scalars(query.offset(offset).limit(limit + 1)))
        next_cursor = _encode_cursor(["metric", offset + limit]) if len(trials) > limit else None
        return trials[:limit], next_cursor
    query = query.order_by(Trial.number)
    if cursor:
        query = query.where(Trial.number > _cursor_int(cursor, "number"))
    trials = list(session.scalars(query.limit(limit + 1)))
    next_cursor = None
    if len(trials) > limit:
        trials = trials[:limit]
        next_cursor = _encode_cursor(["number", trials[-1].number])
    return trials, next_cursor


def _cursor_int(cursor: str | None, kind: str) -> int:
    if not cursor:
        return 0
    parts = _decode_cursor(cursor)
    if len(parts) != 2 or parts[0] != kind or not isinstance(parts[1], int):
        raise CursorError(
            f"this cursor belongs to another listing; pass the `next_cursor` of a page listed "
            f"with order={kind}, or leave it out for the first page."
        )
    return parts[1]


class CursorError(ValueError):
    """A pagination cursor this service did not hand out."""


def _encode_cursor(parts: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode()


def _decode_cursor(cursor: str) -> list[Any]:
    try:
        parts = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, UnicodeError):
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
    trial = _locked_trial(session, trial_id)
    if trial.state in (TrialState.CANCELLED.value, TrialState.STOPPED.value):
        return "stop"
    if trial.state not in ACTIVE_TRIAL_STATES:
        raise ConflictError(f"trial '{trial_id}' is {trial.state}; it takes no more reports.")
    _upsert_report(session, trial_id, step, metrics)
    # One conditional UPDATE, so concurrent reports never move a trial back to an older step.
    changes: dict[str, Any] = {"heartbeat_at": utcnow()}
    if checkpoint:
        changes["checkpoint"] = checkpoint
    if trial.state == TrialState.PENDING.value:
        changes["state"] = TrialState.RUNNING.value
        changes["started_at"] = trial.started_at or utcnow()
    session.execute(update(Trial).where(Trial.id == trial_id).values(**changes))
    session.execute(
        update(Trial)
        .where(Trial.id == trial_id, Trial.epochs <= step)
        .values(
            metrics=metrics,
            epochs=step,
            objective=_objective(metrics, metric_goal(trial.sweep)[0]),
        )
    )
    sweep_state = trial.sweep.state
    session.commit()
    return "stop" if sweep_state == SweepState.CANCELLED.value else "continue"


def _upsert_report(
    session: Session, trial_id: str, step: int, metrics: dict[str, float | None]
) -> None:
    """Insert the step's report, or replace it when the step was reported before."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - other databases: read, then write
        existing = session.scalars(
            select(TrialReport).where(TrialReport.trial_id == trial_id, TrialReport.step == step)
        ).first()
        if existing is None:
            session.add(TrialReport(trial_id=trial_id, step=step, metrics=metrics))
        else:
            existing.metrics = metrics
        return
    statement = insert(TrialReport).values(
        trial_id=trial_id, step=step, metrics=metrics, created_at=utcnow()
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["trial_id", "step"], set_={"metrics": statement.excluded.metrics}
        )
    )


def record_heartbeat(session: Session, trial_id: str) -> str:
    """Note that a trial's worker is alive; returns "continue" or "stop" as for reports."""
    trial = _locked_trial(session, trial_id)
    if trial.state in (TrialState.CANCELLED.value, TrialState.STOPPED.value):
        return "stop"
    if trial.state not in ACTIVE_TRIAL_STATES:
        raise ConflictError(f"trial '{trial_id}' is {trial.state}; it takes no more heartbeats.")
    trial.heartbeat_at = utcnow()
    session.commit()
    return "continue"


def _locked_trial(session: Session, trial_id: str) -> Trial:
    """The trial row, locked until commit where the database supports row locks."""
    trial = session.scalars(select(Trial).where(Trial.id == trial_id).with_for_update()).first()
    if trial is None:
        return get_trial(session, trial_id)  # raises NotFoundError with its hint
    return trial


_TRANSITIONS = {
    "pause": ({SweepState.RUNNING.value}, SweepState.PAUSED.value),
    "resume": ({SweepState.PAUSED.value}, SweepState.RUNNING.value),
    "cancel": ({SweepState.RUNNING.value, SweepState.PAUSED.value}, SweepState.CANCELLED.value),
}


def change_sweep_state(session: Session, sweep_id: str, action: str) -> Sweep:
    """Pause, resume or cancel a sweep; a transition its state does not allow is a conflict.

    Cancelling also marks the sweep's pending and running trials `cancelled` (the caller stops
    their workers).
    """
    sweep = session.scalars(select(Sweep).where(Sweep.id == sweep_id).with_for_update()).first()
    if sweep is None:
        sweep = get_sweep(session, sweep_id)
    allowed_from, new_state = _TRANSITIONS[action]
    if sweep.state == new_state and action != "cancel":
        return sweep  # pausing a paused sweep (or resuming a running one) changes nothing
    if sweep.state not in allowed_from:
        raise ConflictError(
            f"sweep '{sweep_id}' is {sweep.state}; it cannot be {action}d "
            f"(only a {' or '.join(sorted(allowed_from))} sweep can)."
        )
    sweep.state = new_state
    if action == "cancel":
        sweep.finished_at = utcnow()
        for trial in session.scalars(
            select(Trial).where(Trial.sweep_id == sweep_id, Trial.state.in_(ACTIVE_TRIAL_STATES))
        ):
            trial.state = TrialState.CANCELLED.value
            trial.finished_at = utcnow()
    session.commit()
    return sweep


def record_trial_result(session: Session, trial_id: str, result: dict[str, Any]) -> Trial:
    """Store how a trial ended, filling in any per-step report that never arrived."""
    trial = _locked_trial(session, trial_id)
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
