"""What the scheduler needs of whatever runs trials: the `TrialExecutor` interface.

`ktsweep.worker.RayTrialExecutor` runs them on Ray; the scheduler's unit tests use an in-memory
one. The executor knows nothing of sweeps' states or the database: it runs what it is given and
calls back when a trial starts (after waiting in a lane) and when it ends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ktsweep.worker.trial_spec import TrialResult, TrialSpec

# `on_done(trial_id, result)`: the trial ended (its `result.state`, `lost` and `withdrawn`
# included, see `ktsweep.lifecycle`). Called on a thread of the executor's, once per launch.
TrialDone = Callable[[str, TrialResult], None]
# `on_start(trial_id)`: a trial that waited in a lane started; called before the end of the
# trial ahead of it is reported, on the same thread.
TrialStarted = Callable[[str], None]


class TrialExecutor(Protocol):
    """Runs trials and reports how each ended.

    Lanes: trials launched with a `group` (a sweep) run in that group's `lanes` lanes, one at a
    time per lane; one launched into a busy lane waits in the executor behind the running one
    and starts the moment it ends.
    """

    def start(self) -> None:
        """Connect to whatever runs the trials (called once, before the first launch)."""

    def launch(
        self,
        spec: TrialSpec,
        on_done: TrialDone,
        *,
        group: str | None = None,
        lanes: int = 0,
        on_start: TrialStarted | None = None,
    ) -> bool:
        """Run `spec`; True when it starts now, False when it waits in a lane behind another."""
        ...

    def has_idle_lane(self, group: str, lanes: int) -> bool:
        """Whether a trial launched into `group` now would start at once."""
        ...

    def withdraw(self, group: str) -> list[str]:
        """Take back the group's trials waiting in lanes; each ends "withdrawn". Returns their
        ids."""
        ...

    def cancel(self, trial_id: str) -> None:
        """Stop a trial now (one waiting in a lane never starts); it ends "cancelled"."""
