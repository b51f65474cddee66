"""The trial state machine: every allowed change is written, every other one is refused."""

from __future__ import annotations

import itertools
import uuid

import pytest
from sqlalchemy import select

from ktsweep.lifecycle import (
    ACTIVE_STATES,
    STORED_STATES,
    TRANSITIONS,
    TransitionError,
    TrialState,
    may_move,
)
from ktsweep.service.db import make_engine, make_sessions, migrate
from ktsweep.service.models import Sweep, Trial
from ktsweep.service.trial_states import move_trials, start_trials
from tests.service.helpers import DIGITS_SPEC

STORED = [TrialState(state) for state in STORED_STATES]


@pytest.fixture()
def sessions(database_url):
    engine = make_engine(database_url)
    migrate(engine)
    yield make_sessions(engine)
    engine.dispose()


def stored_trial(sessions, state: TrialState, attempts: int = 1) -> str:
    with sessions() as session:
        sweep = Sweep(id=uuid.uuid4().hex[:12], name="states", spec=DIGITS_SPEC)
        session.add(sweep)
        session.add(
            Trial(
                id=f"{sweep.id}-0",
                sweep_id=sweep.id,
                number=0,
                state=state.value,
                hyperparameters={},
                metrics={},
                attempts=attempts,
            )
        )
        session.commit()
        return f"{sweep.id}-0"


def state_of(sessions, trial_id: str) -> str:
    with sessions() as session:
        return session.scalar(select(Trial.state).where(Trial.id == trial_id))


def test_the_table_covers_every_stored_state_and_only_those():
    assert set(TRANSITIONS) == set(STORED)
    assert all(targets <= set(STORED) for targets in TRANSITIONS.values())
    assert {state.value for state in TrialState if state.is_active} == set(ACTIVE_STATES)
    # An ended trial never changes again.
    assert all(not TRANSITIONS[state] for state in STORED if not state.is_active)


def test_every_allowed_transition_is_written_and_every_other_is_refused(sessions):
    moves = list(itertools.product(STORED, STORED))
    trial_ids = {move: stored_trial(sessions, move[0]) for move in moves}
    for (from_state, to), trial_id in trial_ids.items():
        with sessions() as session:
            moved = move_trials(session, trial_id, to)
            session.commit()
        allowed = may_move(from_state, to)
        assert moved == (1 if allowed else 0), (from_state, to)
        assert state_of(sessions, trial_id) == (to if allowed else from_state).value
    # The table allows what it says and no more: 10 changes among 36 pairs.
    assert sum(may_move(*move) for move in moves) == 10


@pytest.mark.parametrize("never_stored", [TrialState.LOST, TrialState.WITHDRAWN])
def test_the_end_of_an_attempt_is_never_stored(sessions, never_stored):
    trial_id = stored_trial(sessions, TrialState.RUNNING)
    with sessions() as session, pytest.raises(TransitionError, match="never stored"):
        move_trials(session, trial_id, never_stored)
    assert state_of(sessions, trial_id) == "running"


def test_a_transition_no_state_allows_is_refused_before_it_is_written(sessions):
    trial_id = stored_trial(sessions, TrialState.COMPLETED)
    with sessions() as session, pytest.raises(TransitionError, match="completed"):
        move_trials(session, trial_id, TrialState.RUNNING, only_from=["completed"])


def test_a_start_keeps_the_first_start_time_and_waits_for_its_attempt(sessions):
    trial_id = stored_trial(sessions, TrialState.PENDING, attempts=2)
    with sessions() as session:
        first = session.get(Trial, trial_id)
        assert start_trials(session, trial_id, at=first.created_at, attempt=1) == 0
        assert start_trials(session, trial_id, at=first.created_at, attempt=2) == 1
        session.commit()
        # Its session sees the change at once.
        assert first.state == "running" and first.started_at == first.created_at
    assert state_of(sessions, trial_id) == "running"


def test_the_api_filters_trials_by_exactly_the_stored_states():
    from typing import get_args

    from ktsweep.lifecycle import STORED_STATES
    from ktsweep.service.api.routes.sweeps import StoredTrialState

    assert sorted(get_args(StoredTrialState)) == sorted(STORED_STATES)
