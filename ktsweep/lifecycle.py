"""A trial's states and the changes between them: the one state machine of a trial.

Both the controller (`ktsweep.service`) and the workers (`ktsweep.worker`) import this module, so
it imports neither. The controller writes a trial's state only through
`ktsweep.service.trial_states.move_trials`, which refuses any change `TRANSITIONS` does not list.

A trial is stored as `pending` (waiting to start), `running`, or one of the four states it ends
in. Two more states end one attempt of a trial but are never stored: `lost` (the worker process
or its node died; the controller retries it, or stores it `failed` with no retries left) and
`withdrawn` (taken back before it started; it waits as `pending` again).

```
pending <-> running          a start, or a retry / withdrawal before the new attempt starts
pending | running -> completed | stopped | failed | cancelled
```
"""

from __future__ import annotations

import enum


class TrialState(str, enum.Enum):
    """Every state of a trial (a `str`, so `TrialState.RUNNING == "running"`)."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"
    CANCELLED = "cancelled"
    # The end of an attempt only, never stored: the worker died (`lost`), or the trial was taken
    # back before it started (`withdrawn`).
    LOST = "lost"
    WITHDRAWN = "withdrawn"

    @property
    def is_active(self) -> bool:
        """Whether the trial has not ended: it waits to start or runs."""
        return self in (TrialState.PENDING, TrialState.RUNNING)

    @property
    def is_stored(self) -> bool:
        """Whether a trial's row can hold this state (`lost` and `withdrawn` end attempts)."""
        return self not in (TrialState.LOST, TrialState.WITHDRAWN)


# Kept as plain strings: the values the `trials.state` column holds.
ACTIVE_STATES = (TrialState.PENDING.value, TrialState.RUNNING.value)
# The states a trial ends in, and those whose metrics count as a result.
FINISHED_STATES = (
    TrialState.COMPLETED.value,
    TrialState.STOPPED.value,
    TrialState.FAILED.value,
    TrialState.CANCELLED.value,
)
SUCCEEDED_STATES = (TrialState.COMPLETED.value, TrialState.STOPPED.value)
# A worker's report (or heartbeat) of a trial in one of these states is answered "stop".
STOP_REPORTING_STATES = (TrialState.CANCELLED.value, TrialState.STOPPED.value)
STORED_STATES = ACTIVE_STATES + FINISHED_STATES
# The state a trial is stored in when it is created.
INITIAL_STATE = TrialState.PENDING

# Every change of a stored trial's state: from each state, the states it may move to. A trial
# that has ended never changes again.
TRANSITIONS: dict[TrialState, frozenset[TrialState]] = {
    TrialState.PENDING: frozenset(
        {
            TrialState.RUNNING,  # it started (a launch into a free slot, a report, a heartbeat)
            TrialState.COMPLETED,  # it ended before its start was written
            TrialState.STOPPED,
            TrialState.FAILED,  # it could not be launched, or it ended before its start
            TrialState.CANCELLED,  # its sweep was cancelled
        }
    ),
    TrialState.RUNNING: frozenset(
        {
            TrialState.PENDING,  # withdrawn, or retried in a lane behind another trial
            TrialState.COMPLETED,
            TrialState.STOPPED,  # ended early on the controller's word
            TrialState.FAILED,  # it failed, or was lost with no retries left
            TrialState.CANCELLED,
        }
    ),
    TrialState.COMPLETED: frozenset(),
    TrialState.STOPPED: frozenset(),
    TrialState.FAILED: frozenset(),
    TrialState.CANCELLED: frozenset(),
}


class TransitionError(ValueError):
    """A change of a trial's state that `TRANSITIONS` does not allow."""


def sources_of(to: TrialState | str) -> tuple[str, ...]:
    """The stored states a trial may move to `to` from, sorted; raises `TransitionError` for a
    state no trial is ever stored in (`lost`, `withdrawn`)."""
    target = TrialState(to)
    if not target.is_stored:
        raise TransitionError(
            f"a trial is never stored as {target.value!r}: it ends one attempt only; store "
            "the state that attempt leads to (pending to retry it, or failed)."
        )
    return tuple(sorted(state.value for state, targets in TRANSITIONS.items() if target in targets))


def may_move(from_state: TrialState | str, to: TrialState | str) -> bool:
    """Whether a trial stored as `from_state` may move to `to`."""
    return TrialState(to) in TRANSITIONS.get(TrialState(from_state), frozenset())
