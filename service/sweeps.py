"""What the controller does with sweeps and trials, apart from HTTP: create, read, record.

Routes call these functions; the scheduler calls them too. Nothing here knows the search method.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Connection,
    Float,
    Integer,
    Text,
    bindparam,
    case,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import Executable

from ktsweep.lifecycle import STOP_REPORTING_STATES, STORED_STATES
from ktsweep.service.db import json_dumps
from ktsweep.service.models import (
    ACTIVE_TRIAL_STATES,
    Sweep,
    SweepState,
    Trial,
    TrialReport,
    TrialState,
    utcnow,
)
from ktsweep.service.pareto import objective_values, pareto_front
from ktsweep.service.spec import ObjectiveSpec, SweepSpec, parse_spec
from ktsweep.service.trial_states import (
    move_trials,
    start_reported_trial_statement,
    start_trials,
)


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
        raise _trial_not_found(trial_id)
    return trial


def trial_counts(session: Session, sweep_id: str) -> dict[str, int]:
    rows = session.execute(
        select(Trial.state, func.count()).where(Trial.sweep_id == sweep_id).group_by(Trial.state)
    ).all()
    counts = dict.fromkeys(STORED_STATES, 0)
    counts.update({state: count for state, count in rows})
    counts["total"] = sum(count for _, count in rows)
    return counts


def metric_goal(sweep: Sweep) -> tuple[str | None, str]:
    metric = sweep.spec.get("metric") or {}
    return metric.get("name"), metric.get("goal", "minimize")


def sweep_objectives(sweep: Sweep) -> list[ObjectiveSpec] | None:
    """The objectives of a multi-objective sweep (its `metrics`), or None for one metric."""
    metrics = sweep.spec.get("metrics")
    return [ObjectiveSpec.model_validate(item) for item in metrics] if metrics else None


def pareto_front_trials(
    session: Session, sweep: Sweep
) -> list[tuple[Trial, dict[str, float]]] | None:
    """The non-dominated finished trials of a multi-objective sweep, each with its value of
    every objective, by trial number; None for a sweep with one metric (or none).

    As Optuna's `study.best_trials`: completed and stopped trials with a value of every
    objective, none of which another such trial dominates.
    """
    objectives = sweep_objectives(sweep)
    if objectives is None:
        return None
    trials = session.scalars(
        select(Trial)
        .where(
            Trial.sweep_id == sweep.id,
            Trial.state.in_([TrialState.COMPLETED.value, TrialState.STOPPED.value]),
        )
        .order_by(Trial.number)
    ).all()
    points = [
        (trial, values)
        for trial in trials
        for values in [objective_values(trial.metrics, objectives)]
        if values is not None
    ]
    names = [objective.name for objective in objectives]
    front = pareto_front([((trial, values), values) for trial, values in points], objectives)
    return [(trial, dict(zip(names, values, strict=True))) for trial, values in front]


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


def _cursor_int(cursor: str | None, kind: str) -> int:
    if not cursor:
        return 0
    parts = _decode_cursor(cursor)
    if len(parts) != 2 or parts[0] != kind or not _is_trial_number(parts[1]):
        raise CursorError(
            f"this cursor belongs to another listing; pass the `next_cursor` of a page listed "
            f"with order={kind}, or leave it out for the first page."
        )
    return parts[1]


class CursorError(ValueError):
    """A pagination cursor this service did not hand out."""


# A cursor this service hands out is a few dozen characters; a forged one may be anything.
_MAX_CURSOR_CHARS = 1024


def _encode_cursor(parts: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode()


def _is_trial_number(value: Any) -> bool:
    # Anything else cannot be a trial's number (an integer column), nor bound as one.
    return type(value) is int and 0 <= value <= MAX_STEP


def _decode_cursor(cursor: str) -> list[Any]:
    if len(cursor) > _MAX_CURSOR_CHARS:
        raise CursorError(
            "the cursor is not one this service handed out (it is far too long); pass "
            "`next_cursor` from the previous page as it is, or leave it out for the first page."
        )
    try:
        parts = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, UnicodeError, RecursionError):
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
    """Store one step's metrics for a trial and commit; returns "continue" or "stop".

    The same store as a batch of reports (`record_reports`), for one report.

    Raises:
        NotFoundError: No trial has this id.
        ConflictError: The trial has ended (completed or failed): it takes no more reports.
    """
    outcome = record_reports(
        session.connection(), [ReportIn(trial_id, step, metrics, checkpoint)], {}
    )[0]
    session.commit()
    if isinstance(outcome, Exception):
        raise outcome
    return outcome.action


@functools.cache
def _insert_reports(dialect: str, replace: bool):
    """The INSERT of report rows for `dialect`, where a (trial, step) already stored gets the
    new metrics (`replace`) or stays as it is."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(_reports)
    if replace:
        return statement.on_conflict_do_update(
            index_elements=["trial_id", "step"], set_={"metrics": statement.excluded.metrics}
        )
    return statement.on_conflict_do_nothing(index_elements=["trial_id", "step"])


# A report's step is stored in an integer column and becomes the trial's `epochs`; a step
# beyond it would be refused by the database, or stored and outrank every later report.
MAX_STEP = 2**31 - 1


class StepOutOfRangeError(ValueError):
    """A report whose step is outside 0..MAX_STEP."""


@dataclass(frozen=True)
class ReportIn:
    """One worker report, as `record_reports` takes it.

    Raises:
        StepOutOfRangeError: `step` is outside 0..MAX_STEP.
    """

    trial_id: str
    step: int
    metrics: dict[str, float | None]
    checkpoint: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.step <= MAX_STEP:
            raise StepOutOfRangeError(
                f"step {self.step} is out of range: a report's step must be between 0 and "
                f"{MAX_STEP}; report the epoch (or batch) number the metrics belong to."
            )


@dataclass(frozen=True)
class ReportRecorded:
    """What became of a report: the answer for the worker, and the trial's sweep."""

    action: str
    sweep_id: str


_trials = Trial.__table__
_reports = TrialReport.__table__
_AT_OR_AFTER = _trials.c.epochs <= bindparam("r_step", type_=Integer)
# One statement per report: heartbeat, checkpoint, and the latest metrics unless a newer step
# was reported already (SET expressions all read the row's old values). A pending trial's start
# is written by the one writer of states (`trial_states.start_trials`).
_UPDATE_TRIAL_ON_REPORT = (
    update(_trials)
    .where(_trials.c.id == bindparam("r_trial_id"))
    .values(
        heartbeat_at=bindparam("r_now", type_=_trials.c.heartbeat_at.type),
        checkpoint=func.coalesce(bindparam("r_checkpoint", type_=Text), _trials.c.checkpoint),
        metrics=case((_AT_OR_AFTER, bindparam("r_metrics", type_=JSON)), else_=_trials.c.metrics),
        objective=case(
            (_AT_OR_AFTER, bindparam("r_objective", type_=Float)), else_=_trials.c.objective
        ),
        epochs=case((_AT_OR_AFTER, bindparam("r_step", type_=Integer)), else_=_trials.c.epochs),
    )
)


def record_reports(
    connection: Connection,
    reports: Sequence[ReportIn],
    metric_names: dict[str, str | None],
) -> list[ReportRecorded | Exception]:
    """Store a batch of reports in the connection's transaction (the caller commits once): the
    one store of reports, for single reports (`record_report`) and batches alike, on SQLite and
    PostgreSQL.

    For each report of a trial still pending or running: its step's row in `trial_reports`
    (a step reported again gets the new metrics), the trial's heartbeat and checkpoint, its
    latest metrics and objective unless a later step was stored already, and a pending trial
    starts (`pending -> running`). Each report's outcome comes back in its position: a
    `ReportRecorded` ("stop" for a trial stopped or cancelled, or of a cancelled sweep), or the
    NotFoundError / ConflictError (the trial has ended) to raise. One SELECT locks the batch's
    trials (in id order, where the database can), then the report rows and the trial updates go
    as two executemany statements. `metric_names` caches each sweep's metric name (a spec never
    changes).
    """
    found = _lock_trials(connection, sorted({report.trial_id for report in reports}))
    _write_reports(connection, reports, found, metric_names)
    return [_report_outcome(report, found) for report in reports]


# trial id -> (its state, its sweep's id, its sweep's state), before the batch.
_TrialStates = dict[str, tuple[str, str, str]]


def _report_outcome(report: ReportIn, found: _TrialStates) -> ReportRecorded | Exception:
    if report.trial_id not in found:
        return _trial_not_found(report.trial_id)
    state, sweep_id, sweep_state = found[report.trial_id]
    if state in STOP_REPORTING_STATES:
        return ReportRecorded("stop", sweep_id)
    if state not in ACTIVE_TRIAL_STATES:
        return ConflictError(f"trial '{report.trial_id}' is {state}; it takes no more reports.")
    return ReportRecorded(
        "stop" if sweep_state == SweepState.CANCELLED.value else "continue", sweep_id
    )


def _lock_trials(connection: Connection, trial_ids: list[str]) -> _TrialStates:
    # Locked in id order (where the database can), so a trial cannot end between the check
    # and the write, and two batches never wait on each other in a cycle.
    rows = connection.execute(
        select(_trials.c.id, _trials.c.state, _trials.c.sweep_id, Sweep.state)
        .join(Sweep, Sweep.id == _trials.c.sweep_id)
        .where(_trials.c.id.in_(trial_ids))
        .order_by(_trials.c.id)
        .with_for_update(of=_trials)
    ).all()
    return {
        trial_id: (state, sweep_id, sweep_state) for trial_id, state, sweep_id, sweep_state in rows
    }


def _write_reports(
    connection: Connection,
    reports: Sequence[ReportIn],
    found: _TrialStates,
    metric_names: dict[str, str | None],
) -> None:
    accepted = [
        report
        for report in reports
        if report.trial_id in found and found[report.trial_id][0] in ACTIVE_TRIAL_STATES
    ]
    if not accepted:
        return
    missing_names = {found[report.trial_id][1] for report in accepted} - metric_names.keys()
    if missing_names:
        for sweep_id, spec in connection.execute(
            select(Sweep.id, Sweep.spec).where(Sweep.id.in_(missing_names))
        ):
            metric_names[sweep_id] = (spec.get("metric") or {}).get("name")
    now = utcnow()
    # A step reported twice in one batch keeps its last metrics, as two requests would.
    report_rows = {
        (report.trial_id, report.step): {
            "trial_id": report.trial_id,
            "step": report.step,
            "metrics": report.metrics,
            "created_at": now,
        }
        for report in accepted
    }
    trial_updates = [
        {
            "r_trial_id": report.trial_id,
            "r_now": now,
            "r_checkpoint": report.checkpoint or None,
            "r_step": report.step,
            "r_metrics": report.metrics,
            "r_objective": _objective(report.metrics, metric_names[found[report.trial_id][1]]),
        }
        for report in accepted
    ]
    connection.execute(_insert_reports(connection.dialect.name, True), list(report_rows.values()))
    connection.execute(_UPDATE_TRIAL_ON_REPORT, trial_updates)
    pending = {report.trial_id for report in accepted if found[report.trial_id][0] == "pending"}
    start_trials(connection, sorted(pending), now)


# `record_reports` on PostgreSQL in one hand-written statement, for the async report path: its
# connections commit each statement (autocommit), so a batch is atomic only as one statement,
# and one round trip per batch keeps the API's report rate (bench/api_load.py). It locks the
# trials (in id order), upserts the report rows of the active ones, updates those trials as
# _UPDATE_TRIAL_ON_REPORT does, and returns every trial's state from before. Each trial is
# updated once, from its reports folded in Python: the last report of the highest step brings
# the metrics, the last checkpoint given wins. A pending trial's start is written after it, by
# `trial_states`. tests/service/test_report_store.py checks that both give the same rows.
_WRITE_REPORTS_POSTGRESQL = text(
    """
WITH locked AS (
    SELECT t.id, t.state, t.sweep_id, s.state AS sweep_state,
           s.spec -> 'metric' ->> 'name' AS metric_name
    FROM trials AS t JOIN sweeps AS s ON s.id = t.sweep_id
    WHERE t.id = ANY(CAST(:trial_ids AS varchar[]))
    ORDER BY t.id
    FOR UPDATE OF t
),
new_reports AS (
    INSERT INTO trial_reports (trial_id, step, metrics, created_at)
    SELECT r.trial_id, r.step, CAST(r.metrics AS json), :now
    FROM unnest(
        CAST(:report_trial_ids AS varchar[]),
        CAST(:report_steps AS integer[]),
        CAST(:report_metrics AS text[])
    ) AS r (trial_id, step, metrics)
    JOIN locked ON locked.id = r.trial_id
    WHERE locked.state IN ('pending', 'running')
    ON CONFLICT (trial_id, step) DO UPDATE SET metrics = excluded.metrics
),
latest AS (
    SELECT u.trial_id, u.step, CAST(u.metrics AS json) AS metrics, u.checkpoint,
           locked.metric_name
    FROM unnest(
        CAST(:trial_ids AS varchar[]),
        CAST(:steps AS integer[]),
        CAST(:metrics AS text[]),
        CAST(:checkpoints AS text[])
    ) AS u (trial_id, step, metrics, checkpoint)
    JOIN locked ON locked.id = u.trial_id
    WHERE locked.state IN ('pending', 'running')
),
updated AS (
    UPDATE trials AS t SET
        heartbeat_at = :now,
        checkpoint = COALESCE(latest.checkpoint, t.checkpoint),
        metrics = CASE WHEN t.epochs <= latest.step THEN latest.metrics ELSE t.metrics END,
        objective = CASE
            WHEN t.epochs > latest.step THEN t.objective
            WHEN json_typeof(latest.metrics -> latest.metric_name) = 'number'
                THEN CAST(latest.metrics ->> latest.metric_name AS double precision)
        END,
        epochs = CASE WHEN t.epochs <= latest.step THEN latest.step ELSE t.epochs END
    FROM latest
    WHERE t.id = latest.trial_id
)
SELECT id, state, sweep_id, sweep_state FROM locked
"""
)


async def record_reports_in_one_statement(
    fetch: Fetch, reports: Sequence[ReportIn]
) -> list[ReportRecorded | Exception]:
    """`record_reports` on PostgreSQL for async callers (`AsyncConnections.run`): the batch is
    one statement, so it is atomic even on an autocommit connection; the pending trials among
    it then start, one statement each (a trial's first reports only)."""
    params = _one_statement_params(reports)
    rows = await fetch(_WRITE_REPORTS_POSTGRESQL, params)
    found = {
        trial_id: (state, sweep_id, sweep_state) for trial_id, state, sweep_id, sweep_state in rows
    }
    for trial_id in sorted({report.trial_id for report in reports}):
        if found.get(trial_id, ("",))[0] == "pending":
            await fetch(
                start_reported_trial_statement(), {"trial_id": trial_id, "now": params["now"]}
            )
    return [_report_outcome(report, found) for report in reports]


def _one_statement_params(reports: Sequence[ReportIn]) -> dict[str, Any]:
    rows: dict[tuple[str, int], ReportIn] = {}
    latest: dict[str, ReportIn] = {}
    checkpoints: dict[str, str] = {}
    for report in reports:
        rows[(report.trial_id, report.step)] = report  # a step given twice: the last one
        if report.trial_id not in latest or report.step >= latest[report.trial_id].step:
            latest[report.trial_id] = report
        if report.checkpoint:
            checkpoints[report.trial_id] = report.checkpoint
    trial_ids = sorted(latest)
    return {
        "now": utcnow(),
        "report_trial_ids": [report.trial_id for report in rows.values()],
        "report_steps": [report.step for report in rows.values()],
        "report_metrics": [json_dumps(report.metrics) for report in rows.values()],
        "trial_ids": trial_ids,
        "steps": [latest[trial_id].step for trial_id in trial_ids],
        "metrics": [json_dumps(latest[trial_id].metrics) for trial_id in trial_ids],
        "checkpoints": [checkpoints.get(trial_id) for trial_id in trial_ids],
    }


def _trial_not_found(trial_id: str) -> NotFoundError:
    return NotFoundError(
        f"no trial with id '{trial_id}'; list a sweep's trials with "
        "GET /api/v1/sweeps/{id}/trials."
    )


def record_heartbeat(session: Session, trial_id: str, node: dict[str, Any] | None = None) -> str:
    """Note that a trial's worker is alive, and on which node when it says; returns "continue"
    or "stop" as for reports."""
    trial = locked_trial(session, trial_id)
    if trial.state in STOP_REPORTING_STATES:
        return "stop"
    if trial.state not in ACTIVE_TRIAL_STATES:
        raise ConflictError(f"trial '{trial_id}' is {trial.state}; it takes no more heartbeats.")
    trial.heartbeat_at = utcnow()
    if trial.state == TrialState.PENDING.value and trial.attempts > 0:
        # It waited in a lane and has started (the controller may not know yet).
        start_trials(session, trial_id, trial.heartbeat_at)
    if node:
        trial.node = node
    session.commit()
    return "continue"


def locked_trial(session: Session, trial_id: str) -> Trial:
    """The trial row, locked until commit where the database supports row locks; raises
    `NotFoundError` when there is none."""
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
        # One time for the sweep and the trials it cancels: the caller finds them by it.
        sweep.finished_at = now = utcnow()
        move_trials(session, None, TrialState.CANCELLED, sweep_id=sweep_id, finished_at=now)
    session.commit()
    return sweep


def record_trial_result(
    session: Session, trial_id: str, result: dict[str, Any], metric: str | None = None
) -> tuple[Trial, list[dict[str, Any]]]:
    """Store how a trial ended, filling in any per-step report that never arrived.

    Args:
        session: The session; committed here.
        trial_id: The trial.
        result: `TrialResult.to_dict()`.
        metric: The sweep's metric name, when the caller knows it (else read from the sweep).

    Returns:
        The trial, and its whole history by step (`{"step", "metrics"}`).
    """
    trial = locked_trial(session, trial_id)
    steps = dict(
        session.execute(
            select(TrialReport.step, TrialReport.metrics).where(TrialReport.trial_id == trial_id)
        ).all()
    )
    missing = {
        entry["step"]: entry["metrics"]
        for entry in result.get("history") or []
        if entry["step"] not in steps
    }
    if missing:
        # A report of one of these steps may be stored meanwhile (the worker's last report,
        # still in flight): that one stays.
        session.execute(
            _insert_reports(session.get_bind().dialect.name, False),
            [
                {"trial_id": trial_id, "step": step, "metrics": metrics}
                for step, metrics in missing.items()
            ],
        )
        steps.update(missing)
    # A cancelled trial stays cancelled: the table allows no change out of an ended state.
    move_trials(session, trial_id, result["state"], only_from=ACTIVE_TRIAL_STATES)
    if result.get("metrics"):
        trial.metrics = result["metrics"]
        if metric is None:
            metric = metric_goal(trial.sweep)[0]
        trial.objective = _objective(result["metrics"], metric)
    trial.epochs = max(trial.epochs, result.get("epochs") or 0)
    trial.wandb = result.get("wandb")
    trial.checkpoint = result.get("checkpoint") or trial.checkpoint
    trial.error = result.get("error")
    trial.node = result.get("node") or trial.node
    ended_at = result.get("ended_at")
    trial.finished_at = datetime.fromtimestamp(ended_at, timezone.utc) if ended_at else utcnow()
    session.commit()
    history = [{"step": step, "metrics": steps[step]} for step in sorted(steps)]
    return trial, history


# What the API shows of a trial (TrialOut), read as plain rows: no ORM objects on hot paths.
TRIAL_OUT_COLUMNS = tuple(
    _trials.c[name]
    for name in (
        "id",
        "sweep_id",
        "number",
        "state",
        "hyperparameters",
        "metrics",
        "objective",
        "epochs",
        "wandb",
        "checkpoint",
        "error",
        "attempts",
        "node",
        "created_at",
        "started_at",
        "finished_at",
    )
)

_TRIAL_OUT_KEYS = tuple(column.name for column in TRIAL_OUT_COLUMNS)
# Built once: building a statement per request costs more than running it.
_READ_TRIAL = select(*TRIAL_OUT_COLUMNS).where(_trials.c.id == bindparam("trial_id"))
_READ_HISTORY = (
    select(_reports.c.step, _reports.c.metrics)
    .where(_reports.c.trial_id == bindparam("trial_id"))
    .order_by(_reports.c.step)
)
# On PostgreSQL the history comes in the trial's row, as a JSON array of [step, metrics]:
# one round trip per detail instead of two.
_HISTORY_ARRAY = (
    select(
        func.coalesce(
            func.json_agg(
                aggregate_order_by(
                    func.json_build_array(_reports.c.step, _reports.c.metrics), _reports.c.step
                )
            ),
            text("'[]'::json"),
        )
    )
    .where(_reports.c.trial_id == _trials.c.id)
    .scalar_subquery()
)
_READ_TRIAL_AND_HISTORY = select(*TRIAL_OUT_COLUMNS, _HISTORY_ARRAY).where(
    _trials.c.id == bindparam("trial_id")
)
_READ_SPEC = select(Sweep.spec).where(Sweep.id == bindparam("sweep_id"))
_OBJECTIVE, _NUMBER = _TRIAL_OUT_KEYS.index("objective"), _TRIAL_OUT_KEYS.index("number")

# Runs one of the statements above with its parameters; gives the rows as tuples.
Fetch = Callable[[Executable, dict[str, Any]], Awaitable[Sequence[Sequence[Any]]]]


async def read_trial(
    fetch: Fetch, trial_id: str, postgresql: bool = False
) -> tuple[dict[str, Any], Sequence[Any]]:
    """A trial's row (TRIAL_OUT_COLUMNS) and its history rows (step, metrics) by step; on
    PostgreSQL (`postgresql=True`) in one statement."""
    if postgresql:
        rows = await fetch(_READ_TRIAL_AND_HISTORY, {"trial_id": trial_id})
        if not rows:
            raise _trial_not_found(trial_id)
        *row, history = rows[0]
        return dict(zip(_TRIAL_OUT_KEYS, row, strict=True)), history
    rows = await fetch(_READ_TRIAL, {"trial_id": trial_id})
    if not rows:
        raise _trial_not_found(trial_id)
    history = await fetch(_READ_HISTORY, {"trial_id": trial_id})
    return dict(zip(_TRIAL_OUT_KEYS, rows[0], strict=True)), history


async def warm_up_reads(fetch: Fetch) -> None:
    """Run each hot read of PostgreSQL once, finding nothing, so the database has planned them
    all (see `AsyncConnections.open`)."""
    none = {"trial_id": "", "sweep_id": ""}
    await fetch(_READ_TRIAL_AND_HISTORY, none)
    await fetch(_READ_SPEC, none)
    for maximize in (False, True):
        await fetch(_trial_page_query(False, "metric", maximize, None), {**none, "limit": 1})
    await fetch(_trial_page_query(False, "number", False, None), {**none, "limit": 1})


async def list_trials(
    fetch: Fetch,
    sweep_id: str,
    goals: dict[str, str],
    state: str | None = None,
    order: str = "number",
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of a sweep's trials as rows (TRIAL_OUT_COLUMNS), `limit` at a time.

    `order="number"` lists them in submission order; `order="metric"` best first by the sweep's
    goal, trials without a metric last. Both page by keyset (the cursor holds the last row's
    position), so a page costs the same wherever it is. `goals` caches each sweep's metric goal
    (a spec never changes, and sweeps are never deleted).
    """
    params: dict[str, Any] = {"sweep_id": sweep_id, "state": state, "limit": limit + 1}
    after = None
    if order == "metric" and cursor:
        params["after_objective"], params["after_number"] = _metric_cursor(cursor)
        after = "metric" if params["after_objective"] is not None else "missing metric"
    elif cursor:
        params["after_number"] = _cursor_int(cursor, "number")
        after = "number"
    goal = goals.get(sweep_id)
    if goal is None:
        found = await fetch(_READ_SPEC, {"sweep_id": sweep_id})
        if not found:
            raise NotFoundError(
                f"no sweep with id '{sweep_id}'; list sweeps with GET /api/v1/sweeps."
            )
        goal = goals[sweep_id] = (found[0][0].get("metric") or {}).get("goal", "minimize")
    query = _trial_page_query(state is not None, order, goal == "maximize", after)
    rows = await fetch(query, params)
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        if order == "metric":
            next_cursor = _encode_cursor(["metric", last[_OBJECTIVE], last[_NUMBER]])
        else:
            next_cursor = _encode_cursor(["number", last[_NUMBER]])
    return [dict(zip(_TRIAL_OUT_KEYS, row, strict=True)) for row in rows], next_cursor


@functools.cache
def _trial_page_query(by_state: bool, order: str, maximize: bool, after: str | None):
    """The statement for one kind of page; `after` is the kind of cursor, if any."""
    objective, number = _trials.c.objective, _trials.c.number
    query = select(*TRIAL_OUT_COLUMNS).where(_trials.c.sweep_id == bindparam("sweep_id"))
    if by_state:
        query = query.where(_trials.c.state == bindparam("state"))
    after_number = bindparam("after_number", type_=Integer)
    after_objective = bindparam("after_objective", type_=Float)
    if order == "metric":
        query = query.order_by(
            objective.is_(None).asc(), objective.desc() if maximize else objective.asc(), number
        )
        if after == "metric":
            beyond = objective < after_objective if maximize else objective > after_objective
            query = query.where(
                beyond
                | ((objective == after_objective) & (number > after_number))
                | objective.is_(None)
            )
        elif after == "missing metric":
            query = query.where(objective.is_(None), number > after_number)
    else:
        query = query.order_by(number)
        if after == "number":
            query = query.where(number > after_number)
    return query.limit(bindparam("limit", type_=Integer))


def _metric_cursor(cursor: str) -> tuple[float | None, int]:
    parts = _decode_cursor(cursor)
    if (
        len(parts) != 3
        or parts[0] != "metric"
        or not (parts[1] is None or _is_objective(parts[1]))
        or not _is_trial_number(parts[2])
    ):
        raise CursorError(
            "this cursor belongs to another listing; pass the `next_cursor` of a page listed "
            "with order=metric, or leave it out for the first page."
        )
    return parts[1], parts[2]


def _is_objective(value: Any) -> bool:
    # A float column's value: finite, and an integer only where a float holds it.
    if type(value) is int:
        return abs(value) <= 2**53
    return type(value) is float and math.isfinite(value)


def trial_history(session: Session, trial: Trial) -> list[dict[str, Any]]:
    reports = session.scalars(
        select(TrialReport).where(TrialReport.trial_id == trial.id).order_by(TrialReport.step)
    )
    return [{"step": report.step, "metrics": report.metrics} for report in reports]
