"""Runs trials as Ray tasks: the one place where the Ray remote boundary is."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import ray

from worker.last_checkpoint import read_last_checkpoint
from worker.resources import max_calls, ray_options
from worker.trial_spec import TrialResult, TrialSpec, node_info

__all__ = ["RayTrialExecutor", "WORKER_LOST_ERRORS", "ensure_ray", "ray_options", "trial_task"]

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


class RayTrialExecutor:
    """Launches trials on Ray and calls back the moment each one ends.

    How a trial ends: the result its worker returns ("completed", "stopped", "failed" with
    the traceback); "cancelled" after `cancel`; "failed" with a timeout error when it runs past
    `spec.timeout_s` (its process is killed); "lost" when its worker process or node died, with
    the trial's latest-epoch checkpoint and epoch count, so it can be retried from there.

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
        self._lock = threading.Lock()

    def start(self) -> None:
        ensure_ray(self.address)

    def launch(self, spec: TrialSpec, on_done: TrialDone) -> None:
        """Start `spec` as a Ray task; `on_done(trial_id, result)` runs when it ends."""
        self.start()
        task = trial_task(run_trial_task, spec.resources, self.fresh_process)
        ref = task.remote(spec.to_dict())
        with self._lock:
            self._refs[spec.trial_id] = ref
            self._specs[spec.trial_id] = spec
            self._ending.pop(spec.trial_id, None)
            if spec.timeout_s:
                timer = threading.Timer(spec.timeout_s, self._time_out, args=(spec.trial_id,))
                timer.daemon = True
                self._timers[spec.trial_id] = timer
                timer.start()
        ref.future().add_done_callback(
            lambda future: self._finished(spec.trial_id, future, on_done)
        )

    def _finished(self, trial_id: str, future, on_done: TrialDone) -> None:
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
        """Stop a running trial now (its process is killed); it ends "cancelled"."""
        with self._lock:
            ref = self._refs.get(trial_id)
            if ref is None:
                return
            self._ending[trial_id] = "cancelled"
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
