"""`distribute`: an existing Keras Tuner script's trials, run in parallel on Ray.

Keras Tuner's `Oracle` already serves several tuners at once, each asking for trials under its
own `tuner_id` (its distributed mode). `distribute` puts that to work inside one process: the
tuner's `search` becomes a loop that keeps `parallel_trials` trials out on Ray, each under its
own `tuner_id`, and hands every result back to the oracle exactly as `BaseTuner.search` does.
The trial itself runs the tuner's own `run_trial` (so `Hyperband`, a subclass's `run_trial` and a
`HyperModel.fit` work as they are) on a copy of the tuner in a Ray worker.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass
from typing import Any

import keras_tuner as kt
import numpy as np
import ray
from keras_tuner.src import errors as kt_errors
from keras_tuner.src.engine import tuner_utils
from keras_tuner.src.engine.oracle import _maybe_infer_direction_from_objective as _direction_of
from keras_tuner.src.engine.trial import TrialStatus

from ktsweep.worker.last_checkpoint import (
    LAST_CHECKPOINT,
    LAST_CHECKPOINT_INFO,
    WORKER_INFO,
    LastEpochCheckpoint,
    forget_last_checkpoint,
    read_last_checkpoint,
    write_worker_info,
)
from ktsweep.worker.ray_runner import WORKER_LOST_ERRORS, ensure_ray, trial_task
from ktsweep.worker.resources import check_resources, limit_gpu_memory

log = logging.getLogger(__name__)

DEFAULT_CALLBACKS: dict[str, Any] = {"metrics_logger": {"log_freq": "epoch"}}


def distribute(
    tuner: kt.engine.base_tuner.BaseTuner,
    parallel_trials: int | None = None,
    resources_per_trial: dict[str, Any] | None = None,
    wandb: dict[str, Any] | None = None,
    callbacks: dict[str, Any] | None = None,
    *,
    max_retries: int = 2,
    timeout_s: float | None = None,
    fresh_process: bool | None = None,
    address: str | None = None,
    checkpoint_every_s: float = 10.0,
    shared_directory: bool | None = None,
) -> DistributedSearch:
    """Make `tuner.search(...)` run its trials in parallel on Ray.

    Call it once after creating the tuner; the script's `tuner.search(x, y, ...)` is then
    unchanged. Each trial runs on a Ray worker with `resources_per_trial`; the `search`
    arguments (the training data) go to Ray's object store once, not once per trial. The
    oracle decides every trial as before, so `results_summary()`, `get_best_hyperparameters()`,
    `get_best_models()`, resuming with `overwrite=False`, `max_retries_per_trial`,
    `max_consecutive_failed_trials` and `FailedTrialError` keep their meaning. Ray is the
    cluster at `address` (else `RAY_ADDRESS`), or a local Ray started on first search. On a
    cluster of several machines the tuner's `directory` need not be shared: a trial on another
    machine works in a folder of its own there, and its files (the best-epoch checkpoint that
    `get_best_models()` and Hyperband's continuations load) come back to `directory` with its
    result; a Hyperband continuation takes its parent's checkpoint along.

    A worker process that dies mid-trial (killed, out of memory, its node lost) is retried up
    to `max_retries` times, resuming from the trial's latest checkpoint (a `run_trial` of a
    subclass restarts instead, since it may build its model another way). That checkpoint is
    saved at the end of an epoch once `checkpoint_every_s` seconds have passed since the last.

    Args:
        tuner: A Keras Tuner tuner (`RandomSearch`, `GridSearch`, `BayesianOptimization`,
            `Hyperband`, or a subclass).
        parallel_trials: Trials running at once. Default: as many as the cluster's CPUs
            (GPUs, TPUs) fit with `resources_per_trial`.
        resources_per_trial: Ray resources of one trial: `cpu` (default 1), `gpu` (a fraction
            packs several trials on one GPU, each kept to its share of the GPU's memory),
            `tpu` (chips, Ray's `TPU` resource), `memory` (bytes).
        wandb: W&B settings (`project`, `entity`, `mode`, `dir`, `tags`): each trial then
            logs to its own run, grouped by the tuner's `project_name`. Default None: no runs.
        callbacks: Our callbacks for each trial, as a sweep spec's `callbacks:` section
            (`metrics_logger`, `checkpoint`, `eval_table`). They log to the trial's W&B run,
            so they need `wandb`. Default: the metrics logger, once per epoch.
        max_retries: Retries of a trial whose worker died. Default 2.
        timeout_s: Seconds a trial may run before it is ended as failed. Default None.
        fresh_process: True: each trial in a new process; None (default): GPU and TPU trials
            in a new process each, CPU trials in warm reused processes.
        address: The Ray cluster's address. Default None: `RAY_ADDRESS`, else a local Ray.
        shared_directory: Whether every worker sees the tuner's `directory` (a shared file
            system). None (default): trials on the driver's machine use it, trials on other
            machines ship their files back. False: every trial ships its files back.
        checkpoint_every_s: Seconds between the resumable checkpoints a trial saves at the
            end of its epochs (the whole model with its optimizer state), so a retried trial
            loses at most this much training. 0 saves every epoch. Default 10.

    Returns:
        The `DistributedSearch` that `tuner.search` now is.

    Example:

    ```python
    tuner = keras_tuner.RandomSearch(build_model, objective="val_accuracy", max_trials=20)
    distribute(tuner, parallel_trials=4, resources_per_trial={"gpu": 0.25})
    tuner.search(x, y, epochs=5, validation_data=(x_val, y_val))
    best_model = tuner.get_best_models(1)[0]
    ```
    """
    search = DistributedSearch(
        tuner,
        parallel_trials=parallel_trials,
        resources_per_trial=resources_per_trial,
        wandb=wandb,
        callbacks=callbacks,
        max_retries=max_retries,
        timeout_s=timeout_s,
        fresh_process=fresh_process,
        address=address,
        checkpoint_every_s=checkpoint_every_s,
        shared_directory=shared_directory,
    )
    tuner.search = search
    return search


@dataclass
class _Running:
    trial: kt.engine.trial.Trial
    tuner_id: str
    attempt: int
    deadline: float | None
    timed_out: bool = False


class DistributedSearch:
    """A tuner's `search`, with the trials out on Ray (made by `distribute`; same arguments)."""

    def __init__(
        self,
        tuner,
        parallel_trials: int | None = None,
        resources_per_trial: dict[str, Any] | None = None,
        wandb: dict[str, Any] | None = None,
        callbacks: dict[str, Any] | None = None,
        max_retries: int = 2,
        timeout_s: float | None = None,
        fresh_process: bool | None = None,
        address: str | None = None,
        checkpoint_every_s: float = 10.0,
        shared_directory: bool | None = None,
    ):
        if not isinstance(tuner, kt.engine.base_tuner.BaseTuner):
            raise TypeError(
                "distribute() takes a Keras Tuner tuner (e.g. keras_tuner.RandomSearch(...)); "
                f"received {type(tuner).__name__}."
            )
        if parallel_trials is not None and (
            isinstance(parallel_trials, bool)
            or not isinstance(parallel_trials, int)
            or parallel_trials < 1
        ):
            raise ValueError(
                f"parallel_trials must be a positive integer; received {parallel_trials!r}."
            )
        if wandb is not None and not isinstance(wandb, dict):
            raise TypeError(
                "wandb must be a dict of W&B settings, e.g. {'project': 'digits', "
                f"'mode': 'offline'}}, or None; received {type(wandb).__name__}."
            )
        self.tuner = tuner
        self.resources = check_resources(resources_per_trial)
        self.parallel_trials = parallel_trials
        self.wandb = wandb
        self.callbacks = DEFAULT_CALLBACKS if callbacks is None else callbacks
        self.max_retries = max_retries
        self.timeout_s = timeout_s
        self.fresh_process = fresh_process
        self.address = address
        if isinstance(checkpoint_every_s, bool) or not isinstance(checkpoint_every_s, int | float):
            raise TypeError(
                "checkpoint_every_s must be a number of seconds (0 saves every epoch); "
                f"received {checkpoint_every_s!r}."
            )
        if checkpoint_every_s < 0:
            raise ValueError(
                f"checkpoint_every_s must be 0 or more seconds; received {checkpoint_every_s}."
            )
        self.checkpoint_every_s = float(checkpoint_every_s)
        if shared_directory not in (None, True, False):
            raise TypeError(
                f"shared_directory must be True, False or None; received {shared_directory!r}."
            )
        self.shared_directory = shared_directory
        self._driver_node: str | None = None
        self._task = trial_task(_tuner_trial_task, self.resources, fresh_process)

    def __call__(self, *fit_args, **fit_kwargs) -> None:
        """Run the search: the same arguments as the tuner's `search`, trials on Ray."""
        tuner = self.tuner
        if "verbose" in fit_kwargs:
            tuner.oracle.verbose = fit_kwargs.get("verbose")
        ensure_ray(self.address)
        self._driver_node = ray.get_runtime_context().get_node_id()
        slots = self.parallel_trials or self._trials_the_cluster_fits()
        data = _put(fit_args, fit_kwargs)
        shipped = ray.put(_worker_copy(tuner))
        free = [f"ktsweep-{index}" for index in reversed(range(slots))]
        running: dict[ray.ObjectRef, _Running] = {}
        exhausted = False
        tuner.on_search_begin()
        try:
            while True:
                while free and not exhausted:
                    tuner.pre_create_trial()
                    trial = tuner.oracle.create_trial(free[-1])
                    if trial.status == TrialStatus.STOPPED:
                        exhausted = True
                    elif trial.status == TrialStatus.IDLE:
                        if running:
                            break
                        time.sleep(0.05)  # the oracle is computing; ask again, as Keras Tuner does
                    else:
                        tuner.on_trial_begin(trial)
                        self._launch(running, shipped, data, trial, free.pop(), attempt=1)
                if not running:
                    if exhausted:
                        break
                    continue
                for ref in self._wait(running):
                    ended = self._collect(ref, running, shipped, data)
                    if ended is not None:
                        tuner.on_trial_end(ended.trial)
                        free.append(ended.tuner_id)
                # A trial ended: the oracle may now have a retry or a continuation to hand out.
                exhausted = False
        finally:
            for ref in running:
                ray.cancel(ref, force=True)
        tuner.on_search_end()

    def _trials_the_cluster_fits(self) -> int:
        total = ray.cluster_resources()
        fits = []
        for name, key in (("cpu", "CPU"), ("gpu", "GPU"), ("tpu", "TPU")):
            need = self.resources.get(name, 1 if name == "cpu" else 0)
            if need:
                fits.append(int(total.get(key, 0) // need + 1e-9))
        return max(1, min(fits) if fits else 1)

    def _launch(self, running, shipped, data, trial, tuner_id: str, attempt: int) -> None:
        context = {
            "attempt": attempt,
            "resume": attempt > 1,
            "wandb": self.wandb,
            "callbacks": self.callbacks,
            "checkpoint_every_s": self.checkpoint_every_s,
            "driver_node": self._driver_node,
            "shared_directory": self.shared_directory,
        }
        if self.shared_directory is not True:
            context["parent_files"] = self._parent_files(trial)
        ref = self._task.remote([shipped, data], trial, context)
        deadline = time.monotonic() + self.timeout_s if self.timeout_s else None
        running[ref] = _Running(trial, tuner_id, attempt, deadline)

    def _parent_files(self, trial) -> dict[str, bytes] | None:
        """A Hyperband continuation's parent files (its best-epoch checkpoint and build
        config), for a worker that can't read them here."""
        parent = trial.hyperparameters.values.get("tuner/trial_id")
        if parent is None:
            return None
        folder = self.tuner.get_trial_dir(parent)
        return _trial_files(folder, recursive=False)

    def _wait(self, running: dict[ray.ObjectRef, _Running]) -> list[ray.ObjectRef]:
        deadlines = [entry.deadline for entry in running.values() if entry.deadline]
        timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        ready, _ = ray.wait(list(running), num_returns=1, timeout=timeout)
        now = time.monotonic()
        for ref, entry in running.items():
            if entry.deadline and now >= entry.deadline and not entry.timed_out:
                entry.timed_out = True
                ray.cancel(ref, force=True)
        return ready

    def _collect(self, ref, running, shipped, data) -> _Running | None:
        """Apply a finished task's outcome to its trial; None when the trial was relaunched."""
        entry = running.pop(ref)
        trial = entry.trial
        try:
            outcome = ray.get(ref)
        except WORKER_LOST_ERRORS as exc:
            if not entry.timed_out and entry.attempt <= self.max_retries:
                log.warning("trial %s lost its worker (%s); retrying", trial.trial_id, exc)
                self._launch(running, shipped, data, trial, entry.tuner_id, entry.attempt + 1)
                return None
            outcome = _failure(TrialStatus.INVALID, f"the trial's worker died: {exc}")
        except ray.exceptions.TaskCancelledError as exc:
            outcome = _failure(TrialStatus.FAILED, str(exc))
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, kt_errors.FatalError):
                raise exc.cause from None
            outcome = _failure(TrialStatus.INVALID, str(exc))
        if entry.timed_out:
            outcome = _failure(
                TrialStatus.FAILED,
                f"trial {trial.trial_id} ran longer than timeout_s={self.timeout_s:g} s and "
                "was ended. Raise `timeout_s` in distribute(), or make trials shorter.",
            )
        self._apply(trial, outcome)
        return entry

    def _apply(self, trial, outcome: dict[str, Any]) -> None:
        if outcome.get("files"):
            trial_dir = self.tuner.get_trial_dir(trial.trial_id)
            for name, content in outcome["files"].items():
                path = os.path.join(trial_dir, name)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as file:
                    file.write(content)
        if outcome.get("hyperparameters"):
            trial.hyperparameters = kt.HyperParameters.from_config(outcome["hyperparameters"])
        trial.status = outcome["status"]
        trial.message = outcome.get("message")
        if trial.status != TrialStatus.COMPLETED:
            return
        try:
            for metrics, step in outcome["updates"]:
                self.tuner.oracle.update_trial(trial.trial_id, metrics, step=step)
        except Exception:  # e.g. the objective is missing from the metrics, as in BaseTuner
            trial.status = TrialStatus.INVALID
            trial.message = traceback.format_exc()


def _failure(status: str, message: str) -> dict[str, Any]:
    return {"status": status, "message": message}


def _put(fit_args: tuple, fit_kwargs: dict[str, Any]) -> ray.ObjectRef:
    """The search's arguments in Ray's object store, once for all trials."""
    try:
        return ray.put((fit_args, fit_kwargs))
    except Exception as exc:
        raise TypeError(
            "the arguments of tuner.search() could not be sent to the Ray workers "
            f"({type(exc).__name__}: {exc}). Pass data Ray can serialize (NumPy arrays, "
            "pandas frames, keras.utils.PyDataset objects defined in a module), not a "
            "tf.data.Dataset or a generator: build those inside HyperModel.fit instead."
        ) from exc


def _worker_copy(tuner):
    """What the workers get: the tuner without its oracle (which stays here) or `search`."""
    worker_tuner = copy.copy(tuner)
    worker_tuner.__dict__.pop("search", None)
    worker_tuner.oracle = TrialOracle(tuner.oracle)
    return worker_tuner


class TrialOracle:
    """Stands in for the tuner's oracle inside one trial on a worker.

    It answers what `run_trial` asks of an oracle (the objective, the search space, the trial)
    and records `update_trial` calls, which the real oracle replays when the trial returns.

    Args:
        oracle: The tuner's oracle.
    """

    def __init__(self, oracle: kt.Oracle):
        self.objective = oracle.objective
        self.hyperparameters = oracle.get_space()
        self.max_trials = oracle.max_trials
        self.multi_worker = False
        self.should_report = True
        self.trials: dict[str, kt.engine.trial.Trial] = {}
        self.updates: list[tuple[dict[str, float], int]] = []

    def fresh(self) -> TrialOracle:
        oracle = copy.copy(self)
        oracle.trials, oracle.updates = {}, []
        return oracle

    def get_space(self) -> kt.HyperParameters:
        return self.hyperparameters.copy()

    def update_space(self, hyperparameters: kt.HyperParameters) -> None:
        pass  # the real oracle learns new entries from the trial's hyperparameters

    def get_trial(self, trial_id: str):
        return self.trials[trial_id]

    def update_trial(self, trial_id: str, metrics: dict[str, Any], step: int = 0):
        trial = self.trials[trial_id]
        for name, value in metrics.items():
            if not trial.metrics.exists(name):
                direction = _direction_of(self.objective, name)
                trial.metrics.register(name, direction=direction)
            trial.metrics.update(name, value, step=step)
        self.updates.append((_plain(metrics), step))
        return trial

    def __getattr__(self, name: str):
        raise AttributeError(
            f"`oracle.{name}` isn't available inside a trial running on a Ray worker: the "
            "oracle stays in the process that called tuner.search(). A trial can use the "
            "objective, get_space(), get_trial() and update_trial()."
        )


def _plain(metrics: dict[str, Any]) -> dict[str, float]:
    return {name: float(np.asarray(value)) for name, value in metrics.items()}


def _tuner_trial_task(refs: list, trial, context: dict[str, Any]) -> dict[str, Any]:
    limit_gpu_memory()  # before the first GPU operation, which unpickling may cause
    tuner, (fit_args, fit_kwargs) = ray.get(refs)
    from ktsweep.worker.trial_runner import custom_gradients_released

    with custom_gradients_released():
        return run_tuner_trial(tuner, trial, fit_args, fit_kwargs, context)


def run_tuner_trial(
    tuner, trial, fit_args: tuple, fit_kwargs: dict[str, Any], context: dict[str, Any]
) -> dict[str, Any]:
    """Run one Keras Tuner trial with the tuner's own `run_trial`; returns its outcome.

    What `BaseTuner._try_run_and_update_trial` does, on a worker: the trial gets our callbacks,
    its W&B run when `context["wandb"]` is set, and a checkpoint of its latest epoch; with
    `context["resume"]` it continues from that checkpoint. `FatalError`s propagate (the search
    stops); any other exception makes the trial "INVALID" ("FAILED" for `FailedTrialError`)
    with its traceback as the message.

    Returns:
        `{"status", "message", "updates": [(metrics, step)], "hyperparameters"}`.
    """
    from ktsweep.worker.trial_runner import start_wandb_run, trial_callbacks

    tuner = copy.copy(tuner)
    tuner.oracle = tuner.oracle.fresh()
    tuner.oracle.trials[trial.trial_id] = trial
    local = not _sees_driver_directory(context)
    if local:
        _use_node_local_directory(tuner, trial, context.get("parent_files"))
        if not context.get("resume"):  # nothing of an earlier search may go back as this trial's
            shutil.rmtree(os.path.join(tuner.project_dir, f"trial_{trial.trial_id}"), True)
    trial_dir = tuner.get_trial_dir(trial.trial_id)
    resume = _resume_point(tuner, trial_dir) if context.get("resume") else None
    if resume is None:
        forget_last_checkpoint(trial_dir)
    initial_epoch = trial.hyperparameters.values.get("tuner/initial_epoch")
    write_worker_info(
        trial_dir,
        trial_id=trial.trial_id,
        attempt=context.get("attempt", 1),
        resumed_from_epoch=resume[1] if resume else None,
    )
    fit_kwargs = dict(fit_kwargs)
    run = None
    if context.get("wandb") is not None:
        run = start_wandb_run(
            context["wandb"],
            name=f"{tuner.project_name}-trial-{trial.trial_id}",
            group=tuner.project_name,
            config=dict(trial.hyperparameters.values),
        )
    exit_code = 1
    try:
        ours, _ = trial_callbacks(
            context.get("callbacks"),
            os.path.join(trial_dir, "checkpoints"),
            run,
            {"validation_data": fit_kwargs.get("validation_data")},
        )
        user_callbacks = list(fit_kwargs.get("callbacks") or [])
        fit_kwargs["callbacks"] = [
            *user_callbacks,
            *ours,
            LastEpochCheckpoint(trial_dir, every_s=context.get("checkpoint_every_s", 0.0)),
        ]
        if resume is not None:
            _continue_from(tuner, trial, fit_kwargs, *resume)
        outcome = _run_and_score(tuner, trial, fit_args, fit_kwargs)
        exit_code = 0 if outcome["status"] == TrialStatus.COMPLETED else 1
    finally:
        if run is not None:
            run.finish(exit_code=exit_code)
        if initial_epoch is not None:
            trial.hyperparameters.values["tuner/initial_epoch"] = initial_epoch
        import keras

        keras.backend.clear_session()
    outcome["hyperparameters"] = trial.hyperparameters.get_config()
    if local:
        outcome["files"] = _trial_files(trial_dir)
        shutil.rmtree(tuner.directory, ignore_errors=True)  # the driver has them now
    return outcome


def _sees_driver_directory(context: dict[str, Any]) -> bool:
    shared = context.get("shared_directory")
    if shared is not None:
        return bool(shared)
    driver = context.get("driver_node")
    return driver is None or ray.get_runtime_context().get_node_id() == driver


def _use_node_local_directory(tuner, trial, parent_files: dict[str, bytes] | None) -> None:
    """Point the trial's tuner copy at a folder of its own on this machine, named after the
    tuner's folder and the trial (so a retry on this machine finds its checkpoint there)."""
    digest = hashlib.sha1(os.path.abspath(str(tuner.directory)).encode()).hexdigest()[:16]
    name = f"{digest}-trial_{trial.trial_id}"
    tuner.directory = os.path.join(tempfile.gettempdir(), "ktsweep-tuners", name)
    parent = trial.hyperparameters.values.get("tuner/trial_id")
    if parent_files and parent is not None:
        folder = tuner.get_trial_dir(parent)
        for name, content in parent_files.items():
            with open(os.path.join(folder, name), "wb") as file:
                file.write(content)


def _trial_files(trial_dir: str, recursive: bool = True) -> dict[str, bytes]:
    """The trial folder's files for the driver's copy, less the resumable checkpoint."""
    skipped = {LAST_CHECKPOINT, LAST_CHECKPOINT_INFO, WORKER_INFO}
    files = {}
    for folder, subfolders, names in os.walk(trial_dir):
        if not recursive:
            subfolders.clear()
        for name in names:
            path = os.path.join(folder, name)
            relative = os.path.relpath(path, trial_dir)
            if relative in skipped or name.startswith("partial-"):
                continue
            with open(path, "rb") as file:
                files[relative] = file.read()
    return files


def _run_and_score(tuner, trial, fit_args, fit_kwargs) -> dict[str, Any]:
    objective = tuner.oracle.objective
    try:
        results = tuner.run_trial(trial, *fit_args, **fit_kwargs)
        if tuner.oracle.updates and trial.metrics.exists(objective.name):
            # The deprecated way: run_trial reported through oracle.update_trial().
            return {"status": TrialStatus.COMPLETED, "updates": tuner.oracle.updates}
        tuner_utils.validate_trial_results(results, objective, "Tuner.run_trial()")
        metrics = tuner_utils.convert_to_metrics_dict(results, objective)
        step = tuner_utils.get_best_step(results, objective)
        return {"status": TrialStatus.COMPLETED, "updates": [(_plain(metrics), int(step))]}
    except kt_errors.FatalError:
        raise
    except Exception as exc:
        status = (
            TrialStatus.FAILED
            if isinstance(exc, kt_errors.FailedTrialError)
            else TrialStatus.INVALID
        )
        return {"status": status, "message": traceback.format_exc(), "updates": []}


def _resume_point(tuner, trial_dir: str) -> tuple[str, int] | None:
    """Where a retried trial continues from, or None to start over."""
    own_run_trial = type(tuner).run_trial.__module__.startswith("keras_tuner")
    if not own_run_trial or getattr(tuner, "executions_per_trial", 1) != 1:
        return None  # it may build its model another way: only a restart is sure to be right
    return read_last_checkpoint(trial_dir)


def _continue_from(tuner, trial, fit_kwargs: dict[str, Any], path: str, epochs: int) -> None:
    """Build the trial's model as usual, then load its latest epoch and fit from there."""
    build = tuner._try_build

    def build_and_restore(hp):
        model = build(hp)
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None and not optimizer.built:
            optimizer.build(model.trainable_variables)  # so its state loads too
        model.load_weights(path)
        return model

    tuner._try_build = build_and_restore
    fit_kwargs["initial_epoch"] = epochs
    if "tuner/initial_epoch" in trial.hyperparameters.values:
        trial.hyperparameters.values["tuner/initial_epoch"] = epochs
    log.info("trial %s resumes from %s after epoch %d", trial.trial_id, path, epochs)


__all__ = ["DistributedSearch", "TrialOracle", "distribute", "run_tuner_trial"]
