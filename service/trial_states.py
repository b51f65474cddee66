"""The one writer of a trial's state: where a trial becomes `running`, `pending` again, or ends.

Every change of `trials.state` is one conditional UPDATE built by `transition`: it changes only
rows whose state may move to the new one (`ktsweep.lifecycle.TRANSITIONS`), so two writers that
race (a report and a cancel, say) can never move a trial backwards or out of an ended state; the
loser's update simply matches no row. Only a trial's creation (`pending`) writes the column
elsewhere.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Update, bindparam, func, or_, update
from sqlalchemy.orm import Session

from ktsweep.lifecycle import TransitionError, TrialState, sources_of
from ktsweep.service.models import Trial


def transition(to: TrialState | str, only_from: Iterable[str] | None = None) -> Update:
    """`UPDATE trials SET state = to WHERE state IN (the states allowed to move to it)`, to which
    the caller adds which trials (and other columns to set).

    Args:
        to: The new state; `lost` and `withdrawn` are never stored (`TransitionError`).
        only_from: Move only trials in these states (narrower than the table allows), or None.

    Raises:
        TransitionError: No state in `only_from` may move to `to`.
    """
    target = TrialState(to)
    sources = [state for state in sources_of(target) if only_from is None or state in only_from]
    if not sources:
        raise TransitionError(
            f"a trial cannot move from {' or '.join(sorted(only_from or ()))} to "
            f"{target.value!r}; see ktsweep.lifecycle.TRANSITIONS."
        )
    # Plain comparisons (not IN): the statement also runs precompiled, on raw connections.
    allowed = or_(*(Trial.state == state for state in sources))
    return update(Trial).where(allowed).values(state=target.value)


def move_trials(
    db: Session | Connection,
    trial_ids: str | Sequence[str] | None,
    to: TrialState | str,
    *,
    sweep_id: str | None = None,
    only_from: Iterable[str] | None = None,
    attempt: int | None = None,
    **values: Any,
) -> int:
    """Move trials to the state `to` where their state allows it, with one UPDATE in the caller's
    transaction (the caller commits); returns how many moved.

    Args:
        db: A session (its loaded trials are updated too) or a connection.
        trial_ids: One trial id, or several; None for every trial of `sweep_id`.
        to: The new state.
        sweep_id: Move only trials of this sweep, or None.
        only_from: Move only trials now in one of these states, or None for any state allowed.
        attempt: Move a trial only while this is its latest attempt (`trials.attempts`), or None.
        **values: Other columns to set in the same statement (`finished_at`, `error`, ...).

    Raises:
        TransitionError: `to` is never stored, or no state in `only_from` may move to it.
    """
    statement = transition(to, only_from).values(**values)
    if trial_ids is not None:
        ids = [trial_ids] if isinstance(trial_ids, str) else list(trial_ids)
        if not ids:
            return 0
        statement = statement.where(Trial.id.in_(ids))
    elif sweep_id is None:
        raise ValueError("name the trials to move: pass `trial_ids`, `sweep_id`, or both.")
    if sweep_id is not None:
        statement = statement.where(Trial.sweep_id == sweep_id)
    if attempt is not None:
        statement = statement.where(Trial.attempts == attempt)
    if isinstance(db, Session):
        statement = statement.execution_options(synchronize_session="fetch")
    return db.execute(statement).rowcount


def start_trials(
    db: Session | Connection,
    trial_ids: str | Sequence[str],
    at: datetime,
    attempt: int | None = None,
    **values: Any,
) -> int:
    """`pending -> running`: the trials started at `at` (a trial that ran before, lost and
    retried, keeps its first start time). Arguments as for `move_trials`."""
    return move_trials(
        db,
        trial_ids,
        TrialState.RUNNING,
        only_from=[TrialState.PENDING.value],
        attempt=attempt,
        started_at=func.coalesce(Trial.started_at, at),
        **values,
    )


@functools.cache
def start_reported_trial_statement() -> Update:
    """`start_trials` for one trial (`trial_id`, at `now`) as a prebuilt statement returning the
    trial's id when it moved, for callers that run statements precompiled (the async report
    path on PostgreSQL)."""
    return (
        transition(TrialState.RUNNING, only_from=[TrialState.PENDING.value])
        .where(Trial.id == bindparam("trial_id"))
        .values(
            started_at=func.coalesce(
                Trial.started_at, bindparam("now", type_=Trial.started_at.type)
            )
        )
        .returning(Trial.id)
    )
