"""An in-memory `TrialExecutor` for scheduler tests: trials run until the test ends them.

It keeps lanes as `RayTrialExecutor` does (one running trial per lane, the others waiting behind
it, the next one started the moment the one ahead ends), and queues every callback, as the Ray
executor hands them to a thread of its own: the test delivers them (`deliver`), so a callback
never runs inside the scheduler's own transaction.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ktsweep.lifecycle import TrialState
from ktsweep.service.trial_executor import TrialDone, TrialStarted
from ktsweep.worker.trial_spec import TrialResult, TrialSpec


@dataclass(eq=False)
class _Launched:
    spec: TrialSpec
    on_done: TrialDone
    on_start: TrialStarted | None
    group: str | None
    lane: list[_Launched] | None = None


@dataclass
class MemoryExecutor:
    """Runs no code: a launched trial "runs" until `finish`, `lose` or `cancel` ends it.

    Attributes:
        launched: Every spec launched, in order (a relaunch appears again).
        cancelled: Ids of the trials `cancel` was called for, in order.
        started: Whether `start` was called.
    """

    launched: list[TrialSpec] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    started: bool = False
    _running: dict[str, _Launched] = field(default_factory=dict)
    _waiting: dict[str, _Launched] = field(default_factory=dict)
    _lanes: dict[str, list[list[_Launched]]] = field(default_factory=dict)
    _callbacks: deque = field(default_factory=deque)

    # The TrialExecutor interface.

    def start(self) -> None:
        self.started = True

    def launch(
        self,
        spec: TrialSpec,
        on_done: TrialDone,
        *,
        group: str | None = None,
        lanes: int = 0,
        on_start: TrialStarted | None = None,
    ) -> bool:
        self.launched.append(spec)
        item = _Launched(spec, on_done, on_start, group)
        if group is None or lanes <= 0:
            self._running[spec.trial_id] = item
            return True
        group_lanes = self._lanes.setdefault(group, [])
        while len(group_lanes) < lanes:
            group_lanes.append([])
        lane = min(group_lanes[:lanes], key=len)
        lane.append(item)
        item.lane = lane
        if len(lane) == 1:
            self._running[spec.trial_id] = item
            return True
        self._waiting[spec.trial_id] = item
        return False

    def has_idle_lane(self, group: str, lanes: int) -> bool:
        group_lanes = self._lanes.get(group, [])
        return len(group_lanes) < lanes or any(not lane for lane in group_lanes[:lanes])

    def withdraw(self, group: str) -> list[str]:
        waiting = [item for lane in self._lanes.get(group, []) for item in lane[1:]]
        for item in waiting:
            self._take_out(item)
            self._end(item, TrialResult(item.spec.trial_id, TrialState.WITHDRAWN.value))
        return [item.spec.trial_id for item in waiting]

    def cancel(self, trial_id: str) -> None:
        self.cancelled.append(trial_id)
        if trial_id in self._waiting:
            item = self._waiting[trial_id]
            self._take_out(item)
            self._end(item, TrialResult(trial_id, TrialState.CANCELLED.value))
        elif trial_id in self._running:
            self._end_running(trial_id, TrialResult(trial_id, TrialState.CANCELLED.value))

    # What the test does.

    @property
    def running(self) -> list[str]:
        """Ids of the trials running now, in launch order."""
        return list(self._running)

    @property
    def waiting(self) -> list[str]:
        """Ids of the trials waiting in lanes."""
        return list(self._waiting)

    def finish(self, trial_id: str, state: str = "completed", **result: Any) -> None:
        """End a running trial as its worker would (`result`: `TrialResult` fields), and
        deliver the callbacks."""
        if state == "completed" and "metrics" not in result:
            result["metrics"] = {"val_accuracy": 0.5}
            result.setdefault("history", [{"step": 1, "metrics": {"val_accuracy": 0.5}}])
            result.setdefault("epochs", 1)
        self._end_running(trial_id, TrialResult(trial_id, state, **result))
        self.deliver()

    def lose(self, trial_id: str, **result: Any) -> None:
        """The trial's worker died: it ends "lost"."""
        self.finish(trial_id, TrialState.LOST.value, error="the worker died", **result)

    def deliver(self) -> None:
        """Run the callbacks queued so far, in order (as the Ray executor's thread would)."""
        while self._callbacks:
            callback, args = self._callbacks.popleft()
            callback(*args)

    def _end_running(self, trial_id: str, result: TrialResult) -> None:
        item = self._running.pop(trial_id)
        lane = item.lane
        if lane is not None:
            lane.remove(item)
            if lane:  # the next one starts the moment this one ends, before its end is told
                head = lane[0]
                self._waiting.pop(head.spec.trial_id)
                self._running[head.spec.trial_id] = head
                if head.on_start is not None:
                    self._callbacks.append((head.on_start, (head.spec.trial_id,)))
        self._end(item, result)

    def _take_out(self, item: _Launched) -> None:
        item.lane.remove(item)
        self._waiting.pop(item.spec.trial_id, None)

    def _end(self, item: _Launched, result: TrialResult) -> None:
        self._callbacks.append((item.on_done, (item.spec.trial_id, result)))
