"""Runs trials as Ray tasks: the one place where the Ray remote boundary is."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray

from worker.last_checkpoint import read_last_checkpoint
from worker.resources import max_calls, ray_options
from worker.trial_spec import WITHDRAWN, TrialResult, TrialSpec, node_info

__all__ = [
    "RayTrialExecutor",
    "WITHDRAWN",
    "WORKER_LOST_ERRORS",
    "ensure_ray",
    "ray_options",
    "trial_task",
]

log = logging.getLogger(__name__)


# Errors that mean the worker process or its node died under the trial: retry it, resuming.
WORKER_LOST_ERRORS = (
    ray.exceptions.WorkerCrashedError,
    ray.exceptions.NodeDiedError,
    ray.exceptions.LocalRayletDiedError,
    ray.exceptions.ObjectLostError,
    ray.exceptions.OwnerDiedError,
    ray.exceptions.OutOfMemoryError,
)


def run_trial_task(spec: dict[str, Any], after: Any = None) -> dict[str, Any]:
    """What the Ray task does: run one trial, turning its exceptions into a failed result.

    `after` is the result of the trial this one waits for (`RayTrialExecutor` lanes): Ray
    starts the task only once that trial has ended. Its value is not used."""
    # Imported here so the controller, which only launches tasks, never imports Keras.
    from worker.trial_runner import run_trial_safely

    result = run_trial_safely(TrialSpec(**spec))
    result.node = result.node or node_info()
    return result.to_dict()


def trial_task(
    function: Callable[..., Any],
    resources: dict[str, Any] | None,
    fresh_process: bool | None = None,
):
    """`function` as a Ray task with a trial's resources and process reuse (`max_calls`)."""
    calls = max_calls(resources, fresh_process)
    key = (function, calls)
    if key not in _REMOTES:
        _REMOTES[key] = ray.remote(max_calls=calls)(function)
    return _REMOTES[key].options(max_retries=0, **ray_options(resources))


_REMOTES: dict[tuple[Callable[..., Any], int], Any] = {}


def ensure_ray(address: str | None = None, **kwargs: Any) -> None:
    """Connect to the Ray cluster at `address`, or start a local one; no-op when connected.

    Without `address`, `KTSWEEP_RAY_ADDRESS` or `RAY_ADDRESS` name the cluster; with none of
    them a local Ray starts.
    """
    if ray.is_initialized():
        return
    address = address or os.environ.get("KTSWEEP_RAY_ADDRESS") or os.environ.get("RAY_ADDRESS")
    ray.init(
        address=address or None,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        **kwargs,
    )


TrialDone = Callable[[str, TrialResult], None]
TrialStarted = Callable[[str], None]


@dataclass(eq=False)
class _Queued:
    """A trial in a lane: the lane's head runs (or waits only for Ray's resources); each trial
    behind it is a Ray task whose argument is the result of the trial ahead, so Ray starts it
    the moment that one ends, without a round trip through the controller."""

    spec: TrialSpec
    group: str
    on_done: TrialDone
    on_start: TrialStarted | None
    ref: Any = None
    lane: list[_Queued] | None = None


class RayTrialExecutor:
    """Launches trials on Ray and calls back the moment each one ends.

    How a trial ends: the result its worker returns ("completed", "stopped", "failed" with
    the traceback); "cancelled" after `cancel`; "failed" with a timeout error when it runs past
    `spec.timeout_s` (its process is killed); "lost" when its worker process or node died, with
    the trial's latest-epoch checkpoint and epoch count, so it can be retried from there;
    "withdrawn" when `withdraw` took it back before it started.

    Lanes: trials launched with a `group` (a sweep) run in that group's `lanes` lanes, one trial
    at a time per lane. A trial launched into a busy lane waits in Ray behind the lane's running
    trial (its task takes that trial's result as an argument) and starts the moment it ends,
    with no round trip through the caller; at most `lanes` trials of the group run at once,
    whatever the cluster's size. Should the trial ahead die, the one behind is submitted again
    on its own, so it still runs.

    Args:
        address: Ray cluster address; None starts a local Ray (or uses `RAY_ADDRESS`).
        fresh_process: Passed to `ray_options`: None (default) runs GPU and TPU trials in a
            fresh process each and reuses warm processes for CPU trials.
    """

    def __init__(self, address: str | None = None, fresh_process: bool | None = None):
        self.address = address
        self.fresh_process = fresh_process
        self._refs: dict[str, ray.ObjectRef] = {}
        self._specs: dict[str, TrialSpec] = {}
        self._timers: dict[str, threading.Timer] = {}
        self._ending: dict[str, str] = {}  # trial id -> "cancelled" | "timeout" | "withdrawn"
        self._queued: dict[str, _Queued] = {}  # trials launched into lanes, by id
        self._lanes: dict[str, list[list[_Queued]]] = {}  # group -> its lanes, head first
        self._unwatched: list[tuple[_Queued, ray.ObjectRef]] = []  # see `_watch`
        self._lock = threading.Lock()
        self._ended: queue.SimpleQueue = queue.SimpleQueue()  # see `_when_done`
        threading.Thread(target=self._handle_ended, name="ktsweep-trial-ends", daemon=True).start()

    def start(self) -> None:
        ensure_ray(self.address)

    def launch(
        self,
        spec: TrialSpec,
        on_done: TrialDone,
        *,
        group: str | None = None,
        lanes: int = 0,
        on_start: TrialStarted | None = None,
    ) -> bool:
        """Start `spec` as a Ray task; `on_done(trial_id, result)` runs when it ends.

        With `group` and `lanes`, the trial goes to the group's first idle lane, or else waits
        behind the running trial of the lane with the shortest queue; `on_start(trial_id)` runs
        when a trial that waited starts.

        Returns:
            True when the trial starts now (Ray may still wait for free resources), False when
            it waits in a lane behind another trial.
        """
        self.start()
        if group is None or lanes <= 0:
            ref = self._submit(spec, None)
            with self._lock:
                self._track(spec, ref)
                self._ending.pop(spec.trial_id, None)
                self._start_timer(spec)
            self._when_done(ref, self._finished, spec.trial_id, on_done)
            return True
        item = _Queued(spec, group, on_done, on_start)
        with self._lock:
            group_lanes = self._lanes.setdefault(group, [])
            while len(group_lanes) < lanes:
                group_lanes.append([])
            lane = min(group_lanes[:lanes], key=len)
            item.lane = lane
            lane.append(item)
            self._queued[spec.trial_id] = item
            self._ending.pop(spec.trial_id, None)
            self._submit_queued(item, lane[-2].ref if len(lane) > 1 else None)
            started = lane[0] is item
            if started:
                self._start_timer(spec)
        self._watch()
        return started

    def has_idle_lane(self, group: str, lanes: int) -> bool:
        """Whether a trial launched into `group` now would start at once."""
        with self._lock:
            group_lanes = self._lanes.get(group, [])
            return len(group_lanes) < lanes or any(not lane for lane in group_lanes[:lanes])

    def withdraw(self, group: str) -> list[str]:
        """Take back every trial of `group` still waiting behind another in its lane: each
        ends "withdrawn" (or, where it had just started, as it ends). Returns their ids."""
        withdrawn = []
        with self._lock:
            for lane in self._lanes.get(group, []):
                for item in lane[1:]:
                    withdrawn.append(self._take_out(item, WITHDRAWN))
        self._watch()
        return withdrawn

    def _submit(self, spec: TrialSpec, after: ray.ObjectRef | None) -> ray.ObjectRef:
        task = trial_task(run_trial_task, spec.resources, self.fresh_process)
        if after is None:
            return task.remote(spec.to_dict())
        return task.remote(spec.to_dict(), after)

    def _submit_queued(self, item: _Queued, after: ray.ObjectRef | None) -> None:
        """Submit `item` (again) behind `after`; the lock is held. Its earlier task, if any, is
        forgotten: the trial ahead of it failed, so Ray fails that task without running it."""
        ref = self._submit(item.spec, after)
        item.ref = ref
        self._track(item.spec, ref)
        self._unwatched.append((item, ref))

    def _watch(self) -> None:
        """Call `_lane_finished` when each task submitted under the lock ends: registered with
        the lock released, since a task that has already ended calls back at once."""
        with self._lock:
            unwatched, self._unwatched = self._unwatched, []
        for item, ref in unwatched:
            self._when_done(ref, self._lane_finished, item, ref)

    def _when_done(self, ref: ray.ObjectRef, handler: Callable[..., None], *args: Any) -> None:
        """Run `handler(*args, future, ended_at)` on the executor's own thread once `ref`'s task
        ends (`ended_at`: when Ray said so, Unix time).

        Ray calls a future's callbacks on the thread that also submits the tasks waiting on it:
        recording a result there (a database commit) would hold back the start of the next
        trial in the lane. So the callback only queues the work.
        """
        ref.future().add_done_callback(
            lambda future: self._ended.put((handler, args, future, time.time()))
        )

    def _handle_ended(self) -> None:
        while True:
            handler, args, future, ended_at = self._ended.get()
            try:
                handler(*args, future, ended_at)
            except Exception:
                log.exception("handling the end of a trial's task failed")

    def _track(self, spec: TrialSpec, ref: ray.ObjectRef) -> None:
        self._refs[spec.trial_id] = ref
        self._specs[spec.trial_id] = spec

    def _start_timer(self, spec: TrialSpec) -> None:
        if not spec.timeout_s:
            return
        timer = threading.Timer(spec.timeout_s, self._time_out, args=(spec.trial_id,))
        timer.daemon = True
        self._timers[spec.trial_id] = timer
        timer.start()

    def _take_out(self, item: _Queued, ending: str) -> str:
        """Take a waiting trial out of its lane and cancel its task (lock held); the trials
        behind it are submitted again behind the one ahead of it."""
        lane = item.lane
        index = lane.index(item)
        lane.remove(item)
        item.lane = None
        self._ending[item.spec.trial_id] = ending
        self._chain_again(lane, index)
        ray.cancel(item.ref)
        return item.spec.trial_id

    def _chain_again(self, lane: list[_Queued], index: int) -> None:
        """Submit the trials of `lane` from `index` on again, each behind the one ahead of it
        (the first on its own when `index` is 0): the task they waited on will never succeed,
        so Ray fails their earlier tasks without running them."""
        for position in range(index, len(lane)):
            self._submit_queued(lane[position], lane[position - 1].ref if position else None)

    def _lane_finished(self, item: _Queued, ref: ray.ObjectRef, future, ended_at: float) -> None:
        started: list[_Queued] = []
        with self._lock:
            if item.ref is not ref:
                return  # a task submitted again since: this one never ran
            lane = item.lane
            if lane is not None:
                failed = future.exception() is not None
                index = lane.index(item)
                lane.remove(item)
                item.lane = None
                if failed:
                    self._chain_again(lane, index)
                if index == 0 and lane:
                    started.append(lane[0])
                    self._start_timer(lane[0].spec)
            self._queued.pop(item.spec.trial_id, None)
            group_lanes = self._lanes.get(item.group)
            if group_lanes is not None and not any(group_lanes):
                del self._lanes[item.group]  # the group's lanes are all empty
        self._watch()
        for head in started:
            if head.on_start is not None:
                try:
                    head.on_start(head.spec.trial_id)
                except Exception:
                    log.exception("recording the start of trial %s failed", head.spec.trial_id)
        self._finished(item.spec.trial_id, item.on_done, future, ended_at)

    def _finished(self, trial_id: str, on_done: TrialDone, future, ended_at: float) -> None:
        with self._lock:
            self._refs.pop(trial_id, None)
            spec = self._specs.pop(trial_id, None)
            timer = self._timers.pop(trial_id, None)
            ending = self._ending.pop(trial_id, None)
        if timer is not None:
            timer.cancel()
        try:
            result = TrialResult(**future.result())
        except Exception as exc:
            result = self._result_of_error(trial_id, spec, exc, ending)
        result.ended_at = result.ended_at or ended_at
        try:
            on_done(trial_id, result)
        except Exception:
            log.exception("recording the end of trial %s failed", trial_id)

    def _result_of_error(
        self, trial_id: str, spec: TrialSpec | None, exc: Exception, ending: str | None
    ) -> TrialResult:
        error = f"{type(exc).__name__}: {exc}"
        if ending == "cancelled":
            return TrialResult(trial_id=trial_id, state="cancelled")
        if ending == WITHDRAWN:
            return TrialResult(trial_id=trial_id, state=WITHDRAWN)
        if ending == "timeout":
            timeout = spec.timeout_s if spec else None
            return TrialResult(
                trial_id=trial_id,
                state="failed",
                error=(
                    f"the trial ran longer than its timeout_s ({timeout:g} s) and was ended. "
                    "Raise `trial.timeout_s`, or make the trial shorter (fewer epochs, a "
                    "smaller model, more resources)."
                ),
                **_last_checkpoint_of(spec),
            )
        if isinstance(exc, ray.exceptions.TaskCancelledError):
            return TrialResult(trial_id=trial_id, state="cancelled")
        if isinstance(exc, WORKER_LOST_ERRORS):
            log.warning("trial %s lost its worker: %s", trial_id, error)
            return TrialResult(
                trial_id=trial_id, state="lost", error=error, **_last_checkpoint_of(spec)
            )
        # Ray could not run the task at all (e.g. its runtime environment failed).
        return TrialResult(trial_id=trial_id, state="failed", error=error)

    def _time_out(self, trial_id: str) -> None:
        with self._lock:
            ref = self._refs.get(trial_id)
            if ref is None:
                return
            self._ending[trial_id] = "timeout"
        log.warning("trial %s ran past its timeout; ending it", trial_id)
        ray.cancel(ref, force=True)

    def cancel(self, trial_id: str) -> None:
        """Stop a trial now: a running one's process is killed; one waiting in a lane never
        starts. It ends "cancelled"."""
        with self._lock:
            item = self._queued.get(trial_id)
            ref = None
            if item is not None and item.lane is not None and item.lane[0] is not item:
                self._take_out(item, "cancelled")  # waiting: its task never starts
            elif trial_id in self._refs:
                ref = self._refs[trial_id]
                self._ending[trial_id] = "cancelled"
        self._watch()
        if ref is not None:
            ray.cancel(ref, force=True)

    @property
    def running(self) -> list[str]:
        with self._lock:
            return list(self._refs)


def _last_checkpoint_of(spec: TrialSpec | None) -> dict[str, Any]:
    """`checkpoint` and `epochs` of the trial's latest-epoch checkpoint, if one was saved."""
    last = read_last_checkpoint(spec.checkpoint_dir) if spec is not None else None
    if last is None:
        return {}
    path, epochs = last
    return {"checkpoint": path, "epochs": epochs}
