"""Runs trials as Ray tasks: the one place where the Ray remote boundary is."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import ray

from worker.trial_spec import TrialResult, TrialSpec

log = logging.getLogger(__name__)


@ray.remote
def _run_trial_task(spec: dict[str, Any]) -> dict[str, Any]:
    # Imported here so the controller, which only launches tasks, never imports Keras.
    from worker.trial_runner import run_trial_safely

    return run_trial_safely(TrialSpec(**spec)).to_dict()


def ray_options(resources: dict[str, Any] | None) -> dict[str, Any]:
    """Ray task options for a trial's `resources` (`cpu`, `gpu`, `tpu`, `memory`)."""
    resources = resources or {}
    options: dict[str, Any] = {
        "num_cpus": resources.get("cpu", 1),
        "num_gpus": resources.get("gpu", 0),
    }
    if resources.get("tpu"):
        options["resources"] = {"TPU": resources["tpu"]}
    if resources.get("memory"):
        options["memory"] = resources["memory"]
    return options


def ensure_ray(address: str | None = None, **kwargs: Any) -> None:
    """Connect to the Ray cluster at `address`, or start a local one; no-op when connected."""
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

    Args:
        address: Ray cluster address; None starts a local Ray (or uses `RAY_ADDRESS`).
    """

    def __init__(self, address: str | None = None):
        self.address = address
        self._refs: dict[str, ray.ObjectRef] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        ensure_ray(self.address)

    def launch(self, spec: TrialSpec, on_done: TrialDone) -> None:
        """Start `spec` as a Ray task; `on_done(trial_id, result)` runs when it ends."""
        self.start()
        task = _run_trial_task.options(max_retries=0, **ray_options(spec.resources))
        ref = task.remote(spec.to_dict())
        with self._lock:
            self._refs[spec.trial_id] = ref
        ref.future().add_done_callback(
            lambda future: self._finished(spec.trial_id, future, on_done)
        )

    def _finished(self, trial_id: str, future, on_done: TrialDone) -> None:
        with self._lock:
            self._refs.pop(trial_id, None)
        try:
            result = TrialResult(**future.result())
        except ray.exceptions.TaskCancelledError:
            result = TrialResult(trial_id=trial_id, state="cancelled")
        except Exception as exc:  # the worker died, or Ray could not run the task
            error = f"{type(exc).__name__}: {exc}"
            result = TrialResult(trial_id=trial_id, state="failed", error=error)
        try:
            on_done(trial_id, result)
        except Exception:
            log.exception("recording the end of trial %s failed", trial_id)

    def cancel(self, trial_id: str) -> None:
        """Stop a running trial now (its process is killed)."""
        with self._lock:
            ref = self._refs.get(trial_id)
        if ref is not None:
            ray.cancel(ref, force=True)

    @property
    def running(self) -> list[str]:
        with self._lock:
            return list(self._refs)
