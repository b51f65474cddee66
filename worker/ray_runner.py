"""Runs trials as Ray tasks: the one place where the Ray remote boundary is."""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray

from ktsweep.lifecycle import TrialState
from ktsweep.worker.environment import secrets_hidden
from ktsweep.worker.last_checkpoint import read_last_checkpoint
from ktsweep.worker.ray_watchdog import start_watchdog
from ktsweep.worker.resources import max_calls, ray_options
from ktsweep.worker.trial_spec import WITHDRAWN, TrialResult, TrialSpec, node_info

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


def run_trial_task(spec: dict[str, Any]) -> dict[str, Any]:
    """What the Ray task does: run one trial, turning its exceptions into a failed result."""
    # Imported here so the controller, which only launches tasks, never imports Keras.
    from ktsweep.worker.trial_runner import run_trial_safely

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


class RayUnreachableError(ConnectionError):
    """The Ray cluster ktsweep was told to use does not answer."""


def ensure_ray(address: str | None = None, **kwargs: Any) -> None:
    """Connect to the Ray cluster at `address`, or start a local one; no-op when connected.

    Without `address`, `KTSWEEP_RAY_ADDRESS` or `RAY_ADDRESS` name the cluster; with none of
    them a new local Ray starts (`address="local"`): ktsweep never attaches to a cluster it
    was not told about, such as one `ray start` recorded on this machine and has since lost.

    Raises:
        RayUnreachableError: `address` is a `host:port` where nothing answers (within a few
            seconds), with the address and the setting that named it.
    """
    if ray.is_initialized():
        return
    setting = "the address given"
    for name in ("KTSWEEP_RAY_ADDRESS", "RAY_ADDRESS"):
        if os.environ.get(name) and address in (None, "", os.environ[name]):
            address, setting = os.environ[name], name
            break
    if address and address not in ("local", "auto"):
        _check_reachable(address, setting)
    # A local Ray's processes copy this environment: they must not get the controller's secrets.
    with secrets_hidden():
        ray.init(
            address=address or "local",
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            **kwargs,
        )
    if address in (None, "", "local"):
        # This process started that Ray: its agents and workers end with it, even on SIGKILL.
        start_watchdog()


def _check_reachable(address: str, setting: str, timeout_s: float = 10.0) -> None:
    """Fail fast, with one line, when nothing listens at a `host:port` Ray address."""
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return  # not host:port; Ray says what is wrong with it
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise RayUnreachableError(
            f"no Ray cluster answers at {address} ({setting}): {exc.strerror or exc}. Start "
            "the cluster, fix the address, or unset it to start a local Ray."
        ) from None


TrialDone = Callable[[str, TrialResult], None]
TrialStarted = Callable[[str], None]


@dataclass(eq=False)
class _Queued:
    """A trial launched into a lane. The lane's first trial runs (or waits only for Ray's
    resources); the ones behind it are not submitted to Ray yet. The executor submits the next
    one the moment Ray says the one ahead ended, before anything records that end."""

    spec: TrialSpec
    group: str
    on_done: TrialDone
    on_start: TrialStarted | None
    lane: list[_Queued] | None = None


class RayTrialExecutor:
    """Launches trials on Ray and calls back the moment each one ends.

    How a trial ends: the result its worker returns ("completed", "stopped", "failed" with
    the traceback); "cancelled" after `cancel`; "failed" with a timeout error when it runs past
    `spec.timeout_s` (its process is killed); "lost" when its worker process or node died, with
    the trial's latest-epoch checkpoint and epoch count, so it can be retried from there;
    "withdrawn" when `withdraw` took it back before it started.

    Lanes: trials launched with a `group` (a sweep) run in that group's `lanes` lanes, one trial
    at a time per lane. A trial launched into a busy lane waits in the executor behind the
    lane's running trial and is submitted the moment Ray says that one ended, however it ended,
    before the caller records the end; at most `lanes` trials of the group run at once,
    whatever the cluster's size.

    Waiting trials are held here rather than in Ray as tasks that take the trial ahead's result
    as an argument: cancelling such a task in Ray 2.60 can crash the process that submitted it
    (a failed reference-count check), and they would be taken back by cancelling.

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
        self._ending: dict[str, str] = {}  # trial id -> "cancelled" | "timeout"
        self._queued: dict[str, _Queued] = {}  # trials launched into lanes, by id
        self._lanes: dict[str, list[list[_Queued]]] = {}  # group -> its lanes, running first
        self._lock = threading.Lock()
        # Two threads of the executor's own; see `_when_done`.
        self._lane_ends: queue.SimpleQueue = queue.SimpleQueue()
        self._ended: queue.SimpleQueue = queue.SimpleQueue()
        for name, work in (("ktsweep-lanes", self._lane_ends), ("ktsweep-trials", self._ended)):
            threading.Thread(target=self._serve, args=(work,), name=name, daemon=True).start()

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
        when a trial that waited starts, before the end of the one ahead is recorded.

        Returns:
            True when the trial starts now (Ray may still wait for free resources), False when
            it waits in a lane behind another trial.
        """
        self.start()
        if group is None or lanes <= 0:
            with self._lock:
                ref = self._submit(spec)
            self._when_done(ref, self._ended, self._finished, spec.trial_id, on_done)
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
            started = lane[0] is item
            ref = None
            if started:
                try:
                    ref = self._submit(spec)
                except Exception:
                    self._take_out(item)
                    raise
        if ref is not None:
            self._when_done(ref, self._lane_ends, self._lane_ended, item)
        return started

    def has_idle_lane(self, group: str, lanes: int) -> bool:
        """Whether a trial launched into `group` now would start at once."""
        with self._lock:
            group_lanes = self._lanes.get(group, [])
            return len(group_lanes) < lanes or any(not lane for lane in group_lanes[:lanes])

    def withdraw(self, group: str) -> list[str]:
        """Take back every trial of `group` still waiting behind another in its lane: each
        ends "withdrawn" without ever starting. Returns their ids."""
        with self._lock:
            waiting = [item for lane in self._lanes.get(group, []) for item in lane[1:]]
            for item in waiting:
                self._take_out(item)
        for item in waiting:
            self._end_unstarted(item, WITHDRAWN)
        return [item.spec.trial_id for item in waiting]

    def _submit(self, spec: TrialSpec) -> ray.ObjectRef:
        """Submit the trial's task and start its timeout (the lock is held)."""
        task = trial_task(run_trial_task, spec.resources, self.fresh_process)
        ref = task.remote(spec.to_dict())
        self._refs[spec.trial_id] = ref
        self._specs[spec.trial_id] = spec
        self._ending.pop(spec.trial_id, None)
        self._start_timer(spec)
        return ref

    def _when_done(self, ref: ray.ObjectRef, to: queue.SimpleQueue, handler, *args: Any) -> None:
        """Run `handler(*args, future, ended_at)` on one of the executor's threads once `ref`'s
        task ends (`ended_at`: when Ray said so, Unix time).

        Ray calls a future's callbacks on its own thread, which also submits tasks: recording a
        result there (a database commit) would hold back the trials submitted meanwhile. So the
        callback only queues the work. A lane's end goes to `_lane_ended` on one thread, which
        submits the lane's next trial at once; every start and end is then recorded on another.
        """
        ref.future().add_done_callback(lambda future: to.put((handler, args, future, time.time())))

    def _lane_ended(self, item: _Queued, future, ended_at: float) -> None:
        """A lane's running trial ended: submit the next one, then queue the recording."""
        with self._lock:
            lane = item.lane  # a running trial stays in its lane until it ends
            lane.remove(item)
            item.lane = None
            self._queued.pop(item.spec.trial_id, None)
            self._start_next(lane, ended_at)
            self._forget_empty_lanes(item.group)
        self._ended.put((self._finished, (item.spec.trial_id, item.on_done), future, ended_at))

    def _start_next(self, lane: list[_Queued], ended_at: float) -> None:
        """Submit the first trial waiting in `lane` (the lock is held). One that Ray refuses
        ends "failed" with Ray's error, and the next one is tried."""
        while lane:
            head = lane[0]
            try:
                ref = self._submit(head.spec)
            except Exception as exc:
                self._take_out(head)
                self._end_unstarted(
                    head, TrialState.FAILED.value, error=f"{type(exc).__name__}: {exc}"
                )
                continue
            self._ended.put((self._started, (head,), None, ended_at))
            # Fine under the lock: the callback, even one run at once, only queues the end.
            self._when_done(ref, self._lane_ends, self._lane_ended, head)
            return

    def _serve(self, work: queue.SimpleQueue) -> None:
        while True:
            handler, args, future, ended_at = work.get()
            try:
                handler(*args, future, ended_at)
            except Exception:
                log.exception("handling the start or end of a trial failed")

    def _started(self, item: _Queued, _future, _ended_at: float) -> None:
        if item.on_start is not None:
            item.on_start(item.spec.trial_id)

    def _end_unstarted(self, item: _Queued, state: str, error: str | None = None) -> None:
        """Queue the end of a trial that never started (its `on_done` runs on the recording
        thread, like every other end)."""
        result = TrialResult(trial_id=item.spec.trial_id, state=state, error=error)
        self._ended.put((self._call_on_done, (item, result), None, time.time()))

    def _call_on_done(self, item: _Queued, result: TrialResult, _future, _ended_at) -> None:
        item.on_done(item.spec.trial_id, result)

    def _forget_empty_lanes(self, group: str) -> None:
        group_lanes = self._lanes.get(group)
        if group_lanes is not None and not any(group_lanes):
            del self._lanes[group]

    def _start_timer(self, spec: TrialSpec) -> None:
        if not spec.timeout_s:
            return
        timer = threading.Timer(spec.timeout_s, self._time_out, args=(spec.trial_id,))
        timer.daemon = True
        self._timers[spec.trial_id] = timer
        timer.start()

    def _take_out(self, item: _Queued) -> None:
        """Take a waiting trial out of its lane (the lock is held)."""
        item.lane.remove(item)
        item.lane = None
        self._queued.pop(item.spec.trial_id, None)
        self._forget_empty_lanes(item.group)

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
            return TrialResult(trial_id=trial_id, state=TrialState.CANCELLED.value)
        if ending == "timeout":
            timeout = spec.timeout_s if spec else None
            return TrialResult(
                trial_id=trial_id,
                state=TrialState.FAILED.value,
                error=(
                    f"the trial ran longer than its timeout_s ({timeout:g} s) and was ended. "
                    "Raise `trial.timeout_s`, or make the trial shorter (fewer epochs, a "
                    "smaller model, more resources)."
                ),
                **_last_checkpoint_of(spec),
            )
        if isinstance(exc, ray.exceptions.TaskCancelledError):
            return TrialResult(trial_id=trial_id, state=TrialState.CANCELLED.value)
        if isinstance(exc, WORKER_LOST_ERRORS):
            log.warning("trial %s lost its worker: %s", trial_id, error)
            return TrialResult(
                trial_id=trial_id,
                state=TrialState.LOST.value,
                error=error,
                **_last_checkpoint_of(spec),
            )
        # Ray could not run the task at all (e.g. its runtime environment failed).
        return TrialResult(trial_id=trial_id, state=TrialState.FAILED.value, error=error)

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
            waiting = item is not None and item.lane is not None and item.lane[0] is not item
            if waiting:
                self._take_out(item)
            ref = None if waiting else self._refs.get(trial_id)
            if ref is not None:
                self._ending[trial_id] = "cancelled"
        if waiting:
            self._end_unstarted(item, TrialState.CANCELLED.value)
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
