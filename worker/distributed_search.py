"""`distribute`: an existing Keras Tuner script's trials, run in parallel on Ray.

Keras Tuner's `Oracle` already serves several tuners at once, each asking for trials under its
own `tuner_id` (its distributed mode). `distribute` puts that to work inside one process: the
tuner's `search` becomes a loop that keeps `parallel_trials` trials out on Ray, each under its
own `tuner_id`, and hands every result back to the oracle exactly as `BaseTuner.search` does.
The trial itself runs the tuner's own `run_trial` (so `Hyperband`, a subclass's `run_trial` and a
`HyperModel.fit` work as they are) on a copy of the tuner in a Ray worker.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from typing import Any

import keras
import keras_tuner as kt
import numpy as np
import ray
from keras_tuner import errors as kt_errors
from keras_tuner.engine.trial import TrialStatus

from ktsweep.worker.compat import keras_tuner as kt_compat
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
    keep_resume_state: bool = False,
    multi_objective: bool = False,
) -> DistributedSearch:
    """Make `tuner.search(...)` run its trials in parallel on Ray.

    Call it once after creating the tuner; the script's `tuner.search(x, y, ...)` is then
    unchanged. Each trial runs on a Ray worker with `resources_per_trial`; the `search`
    arguments (the training data) go to Ray's object store once, not once per trial. The
    oracle decides every trial as before, so `results_summary()`, `get_best_hyperparameters()`,
    `get_best_models()`, resuming with `overwrite=False`, `max_retries_per_trial`,
    `max_consecutive_failed_trials` and `FailedTrialError` keep their meaning. Ray is the
    cluster at `address` (else `RAY_ADDRESS`), or a new local Ray started on first search. A
    cluster's Ray version must be the driver's: on an existing cluster, install its Ray release
    beside ktsweep (`pip install "ray==<the cluster's>"`). On a cluster of several machines
    the tuner's `directory` need not be shared: a trial on another machine works in a folder
    of its own there, and its files (the best-epoch checkpoint that `get_best_models()` and
    Hyperband's continuations load) come back to `directory` with its result; a Hyperband
    continuation takes its parent's checkpoint along.

    A worker process that dies mid-trial (killed, out of memory, its node lost) is retried up
    to `max_retries` times, resuming from the trial's latest checkpoint (a `run_trial` of a
    subclass restarts instead, since it may build its model another way). That checkpoint is
    saved at the end of an epoch once `checkpoint_every_s` seconds have passed since the last,
    and deleted when the trial ends, so the trial folders hold what Keras Tuner leaves there.

    What a trial prints (`fit`'s progress, the user's `print`s) comes back with its result and
    is printed here, each line prefixed by `[trial <id>]`, unless `search` is given `verbose=0`;
    a failed trial's traceback is always printed, as Keras Tuner prints it. Keras Tuner's own
    per-trial lines ("Trial 3 Complete", "Best val_accuracy So Far") show as usual.

    A tuner built with `distribution_strategy=` gets a new strategy of the same class on each
    worker, over that worker's devices (`MirroredStrategy`, `OneDeviceStrategy`,
    `CentralStorageStrategy`); a strategy can't travel to a worker as it is.

    A list objective is Keras Tuner's: one score, the sum of the objectives (each maximised one
    counted negative). With `multi_objective=True` the objectives are kept apart instead, and
    the best trials are the Pareto front, the trials no other trial beats in every objective
    (Optuna's `study.best_trials`): `get_best_models()`, `get_best_hyperparameters()`,
    `oracle.get_best_trials()` and `results_summary()` answer the whole front, best first by
    the first objective (then the next), or its first `num_models` trials. A trial's values are
    its metrics at the epoch Keras Tuner keeps (the best by the summed score, whose checkpoint
    `get_best_models()` loads). The oracle still picks the trials to try by its own score. An
    objective may name a trial's cost, `kt.Objective("model/parameters", "min")` (the model's
    weights) or `kt.Objective("model/fit_time_s", "min")` (seconds of `fit` up to the epoch):
    each trial then adds it to its epochs' logs, so "most accurate, fewest parameters" needs
    no code of the user's.

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
        keep_resume_state: Whether a trial's folder keeps that checkpoint (`last.keras`,
            `last.json`) after the trial ends. Default False: it is deleted.
        multi_objective: Whether a list objective's best trials are its Pareto front (see
            above). Default False: Keras Tuner's summed score ranks them, as without
            `distribute`.

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
        keep_resume_state=keep_resume_state,
        multi_objective=multi_objective,
    )
    tuner.search = search
    if multi_objective:
        ParetoFrontResults(tuner).install()
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
        keep_resume_state: bool = False,
        multi_objective: bool = False,
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
        if not isinstance(keep_resume_state, bool):
            raise TypeError(
                f"keep_resume_state must be True or False; received {keep_resume_state!r}."
            )
        self.keep_resume_state = keep_resume_state
        if not isinstance(multi_objective, bool):
            raise TypeError(
                "multi_objective must be True (the best trials are the Pareto front of the "
                "objectives) or False (Keras Tuner's summed score); received "
                f"{multi_objective!r}."
            )
        self.multi_objective = multi_objective
        self._strategy = strategy_for_workers(getattr(tuner, "distribution_strategy", None))
        self._show_output = True
        self._driver_node: str | None = None
        self._task = trial_task(_tuner_trial_task, self.resources, fresh_process)

    def __call__(self, *fit_args, **fit_kwargs) -> None:
        """Run the search: the same arguments as the tuner's `search`, trials on Ray."""
        tuner = self.tuner
        if "verbose" in fit_kwargs:
            tuner.oracle.verbose = fit_kwargs.get("verbose")
        # As `fit` prints nothing at verbose=0, and its default ("auto") prints progress.
        self._show_output = fit_kwargs.get("verbose", "auto") not in (0, False)
        ensure_ray(self.address)
        self._driver_node = ray.get_runtime_context().get_node_id()
        slots = self.parallel_trials or self._trials_the_cluster_fits()
        data = _put(fit_args, fit_kwargs)
        shipped = ray.put(_worker_copy(tuner, self._strategy))
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
            "keep_resume_state": self.keep_resume_state,
            "capture_output": self._show_output,
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

    def _show(self, trial, outcome: dict[str, Any]) -> None:
        """Print what the trial printed, each line under its trial id."""
        output = outcome.get("output")
        if not output or not self._show_output:
            return
        prefix = f"[trial {trial.trial_id}] "
        lines = output.splitlines()
        print("\n".join(prefix + line for line in lines), flush=True)

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
        self._show(trial, outcome)
        if trial.status == TrialStatus.COMPLETED:
            try:
                for metrics, step in outcome["updates"]:
                    self.tuner.oracle.update_trial(trial.trial_id, metrics, step=step)
            except Exception:  # e.g. the objective is missing from the metrics, as in BaseTuner
                trial.status = TrialStatus.INVALID
                trial.message = traceback.format_exc()
        if trial.status != TrialStatus.COMPLETED and trial.message:
            # Keras Tuner prints a failed trial's traceback to stderr, whatever `verbose` says.
            print(trial.message, file=sys.stderr, flush=True)


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


def _worker_copy(tuner, strategy: StrategyForWorkers | None = None):
    """What the workers get: the tuner without its oracle (which stays here) or `search`, and
    with `strategy` in place of its `distribution_strategy`."""
    worker_tuner = copy.copy(tuner)
    for name in ("search", *ParetoFrontResults.TUNER_METHODS):
        worker_tuner.__dict__.pop(name, None)  # they answer from the oracle, which stays here
    worker_tuner.oracle = TrialOracle(tuner.oracle)
    if strategy is not None:
        worker_tuner.distribution_strategy = strategy
    return worker_tuner


# The `tf.distribute` strategies a worker can build again from their class alone, over its
# own devices, by their public names.
_STRATEGIES_REBUILT_ON_WORKERS = (
    "MirroredStrategy",
    "OneDeviceStrategy",
    "experimental.CentralStorageStrategy",
)


class StrategyForWorkers:
    """Stands for a tuner's `tf.distribute` strategy on its way to a Ray worker.

    A strategy holds the devices and threads of the process that made it and can't be pickled,
    so the worker builds a strategy of the same class over its own devices instead: the GPUs
    Ray gave the trial (`resources_per_trial={"gpu": n}`), else its CPU.

    Args:
        name: The strategy's name under `tf.distribute`, e.g. `"MirroredStrategy"`.
    """

    def __init__(self, name: str):
        self.name = name

    def build(self):
        """A new strategy of the class named `name`, over this process's devices."""
        import tensorflow as tf

        strategy_class = _public_strategy_class(tf, self.name)
        if strategy_class is tf.distribute.OneDeviceStrategy:
            gpus = tf.config.list_logical_devices("GPU")
            return strategy_class(gpus[0].name if gpus else "/cpu:0")
        return strategy_class()


def _public_strategy_class(tf, name: str):
    namespace = tf.distribute
    for part in name.split("."):
        namespace = getattr(namespace, part)
    return namespace


def strategy_for_workers(strategy) -> StrategyForWorkers | None:
    """What stands for a tuner's `distribution_strategy` on the workers (None for none);
    raises a `ValueError` that says what to change when no worker could build it again."""
    if strategy is None:
        return None
    tf = sys.modules.get("tensorflow")
    for name in _STRATEGIES_REBUILT_ON_WORKERS:
        if tf is not None and type(strategy) is _public_strategy_class(tf, name):
            return StrategyForWorkers(name)
    raise ValueError(
        "distribute() can't run the trials of a tuner built with distribution_strategy="
        f"{type(strategy).__name__}(...): a strategy can't be sent to a Ray worker, and a "
        "worker can only build one of its own of these classes: tf.distribute."
        + ", tf.distribute.".join(_STRATEGIES_REBUILT_ON_WORKERS)
        + ". Each trial runs in one Ray worker process: pass distribution_strategy="
        "tf.distribute.MirroredStrategy() to train a trial on all the GPUs that "
        "resources_per_trial={'gpu': n} gives it, or leave distribution_strategy out."
    )


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
                direction = kt_compat.metric_direction(self.objective, name)
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


# The costs of a trial an objective may name: what the service's sweeps record of each trial.
COST_METRICS = ("model/parameters", "model/fit_time_s")


def objective_names(objective: kt.Objective) -> list[str]:
    """The metric names of a tuner's objective: each objective of a list, else its own."""
    return [part.name for part in objectives_of(objective)]


def objectives_of(objective: kt.Objective) -> list[kt.Objective]:
    """The objectives of a list objective (Keras Tuner's `MultiObjective`), else `[objective]`."""
    return list(getattr(objective, "objectives", None) or [objective])


def dominates(first: list[float], second: list[float], objectives: list[kt.Objective]) -> bool:
    """Whether `first` dominates `second`: at least as good in every objective and better in
    one (Optuna's definition, each objective by its direction)."""
    better = False
    for a, b, objective in zip(first, second, objectives, strict=True):
        if objective.direction == "max":
            a, b = -a, -b
        if a > b:
            return False
        better = better or a < b
    return better


class ParetoFrontResults:
    """A tuner's best trials as the Pareto front of its objectives (`multi_objective=True`).

    `install` puts these methods in place of the tuner's `get_best_models`,
    `get_best_hyperparameters` and `results_summary` and of its oracle's `get_best_trials`, so
    the script's calls answer the front: the completed trials no other completed trial
    dominates, as Optuna's `study.best_trials` (trials with equal values are all on it). The
    front is ordered by the first objective, best first, then by the next ones. A count
    (`num_models`, `num_trials`) gives at most that many trials of the front, never one off it;
    None (the default here) gives the whole front.

    A trial's value of an objective is its metric at the trial's `best_step` (the epoch Keras
    Tuner scored, and checkpointed for `get_best_models()`), else its best value of it.

    Args:
        tuner: The Keras Tuner tuner.
    """

    TUNER_METHODS = ("get_best_models", "get_best_hyperparameters", "results_summary")

    def __init__(self, tuner: kt.engine.base_tuner.BaseTuner):
        self.tuner = tuner

    def install(self) -> None:
        """Make the tuner and its oracle answer the front."""
        for name in self.TUNER_METHODS:
            setattr(self.tuner, name, getattr(self, name))
        self.tuner.oracle.get_best_trials = self.get_best_trials

    @property
    def objectives(self) -> list[kt.Objective]:
        return objectives_of(self.tuner.oracle.objective)

    def values(self, trial: kt.engine.trial.Trial) -> list[float] | None:
        """The trial's value of each objective, in their order; None while one is missing."""
        if trial.status != TrialStatus.COMPLETED:
            return None
        values = []
        for objective in self.objectives:
            if not trial.metrics.exists(objective.name):
                return None
            at_best_step = [
                observation.mean()
                for observation in trial.metrics.get_history(objective.name)
                if observation.step == trial.best_step
            ]
            if at_best_step:
                value = at_best_step[0]
            else:
                value = trial.metrics.get_best_value(objective.name)
            if value is None or not np.isfinite(value):
                return None
            values.append(float(value))
        return values

    def front(self) -> list[kt.engine.trial.Trial]:
        """The trials of the Pareto front, the best by the first objective first."""
        objectives = self.objectives
        scored = []
        for trial in self.tuner.oracle.trials.values():
            values = self.values(trial)
            if values is not None:
                scored.append((trial, values))
        front = [
            (trial, values)
            for trial, values in scored
            if not any(dominates(other, values, objectives) for _, other in scored)
        ]
        signs = [-1.0 if objective.direction == "max" else 1.0 for objective in objectives]
        front.sort(
            key=lambda item: [sign * value for sign, value in zip(signs, item[1], strict=True)]
        )
        return [trial for trial, _ in front]

    def get_best_trials(self, num_trials: int | None = None) -> list[kt.engine.trial.Trial]:
        """The front, or its first `num_trials` trials."""
        front = self.front()
        return front if num_trials is None else front[:num_trials]

    def get_best_models(self, num_models: int | None = None) -> list[Any]:
        """The models of the front's trials (each at its checkpointed epoch)."""
        return [self.tuner.load_model(trial) for trial in self.get_best_trials(num_models)]

    def get_best_hyperparameters(self, num_trials: int | None = None) -> list[kt.HyperParameters]:
        """The hyperparameters of the front's trials."""
        return [trial.hyperparameters for trial in self.get_best_trials(num_trials)]

    def results_summary(self, num_trials: int | None = None) -> None:
        """Print the front: each trial's hyperparameters and value of each objective."""
        front = self.front()
        shown = front if num_trials is None else front[:num_trials]
        objectives = ", ".join(f"{o.name} ({o.direction})" for o in self.objectives)
        print("Results summary")
        print(f"Results in {self.tuner.project_dir}")
        print(f"Showing {len(shown)} of the {len(front)} trials of the Pareto front of:")
        print(objectives)
        for trial in shown:
            print()
            print(f"Trial {trial.trial_id} summary")
            print("Hyperparameters:")
            trial.display_hyperparameters()
            for objective, value in zip(self.objectives, self.values(trial), strict=True):
                print(f"{objective.name}: {value}")


class TrialCostLogger(keras.callbacks.Callback):
    """Adds what the trial has cost so far to each epoch's logs, so an objective can name it.

    `model/parameters` is the model's number of weights and `model/fit_time_s` the seconds
    since its training began, as the service's sweeps record them (`trial_cost`). Keras Tuner
    then scores, checkpoints and reports them like any metric the model logs. A training loop
    of a `HyperModel.fit` that never calls `on_train_begin` counts from its first epoch.

    Args:
        names: The costs to add (of `COST_METRICS`).
    """

    def __init__(self, names: list[str]):
        super().__init__()
        self.names = list(names)
        self._started: float | None = None

    def on_train_begin(self, logs=None):
        self._started = time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        if self._started is None:
            self._started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        from ktsweep.worker.trial_runner import trial_cost

        if logs is None or self.model is None:
            return
        if self._started is None:
            self._started = time.monotonic()
        cost = trial_cost(self.model, time.monotonic() - self._started)
        logs.update({name: cost[name] for name in self.names})


def _tuner_trial_task(refs: list, trial, context: dict[str, Any]) -> dict[str, Any]:
    limit_gpu_memory()  # before the first GPU operation, which unpickling may cause
    tuner, (fit_args, fit_kwargs) = ray.get(refs)
    from ktsweep.worker.trial_runner import custom_gradients_released

    with custom_gradients_released():
        return run_tuner_trial(tuner, trial, fit_args, fit_kwargs, context)


# The most of a trial's printed output that goes back to the driver (its end is kept).
MAX_OUTPUT_CHARS = 1_000_000


def run_tuner_trial(
    tuner, trial, fit_args: tuple, fit_kwargs: dict[str, Any], context: dict[str, Any]
) -> dict[str, Any]:
    """Run one Keras Tuner trial with the tuner's own `run_trial`; returns its outcome.

    What `BaseTuner._try_run_and_update_trial` does, on a worker: the trial gets our callbacks,
    its W&B run when `context["wandb"]` is set, and a checkpoint of its latest epoch; with
    `context["resume"]` it continues from that checkpoint, which is deleted once the trial
    ends unless `context["keep_resume_state"]`. `FatalError`s propagate (the search stops);
    any other exception makes the trial "INVALID" ("FAILED" for `FailedTrialError`) with its
    traceback as the message. With `context["capture_output"]`, what the trial prints to
    `sys.stdout` and `sys.stderr` is returned as `output` instead.

    Returns:
        `{"status", "message", "updates": [(metrics, step)], "hyperparameters", "output"}`.
    """
    if not context.get("capture_output"):
        return _run_tuner_trial(tuner, trial, fit_args, fit_kwargs, context)
    printed = io.StringIO()
    # Ray runs one task at a time in a worker process: the process's streams are the trial's.
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        outcome = _run_tuner_trial(tuner, trial, fit_args, fit_kwargs, context)
    output = printed.getvalue()
    if len(output) > MAX_OUTPUT_CHARS:
        output = (
            f"[{len(output) - MAX_OUTPUT_CHARS} characters left out]\n" + output[-MAX_OUTPUT_CHARS:]
        )
    outcome["output"] = output
    return outcome


def _run_tuner_trial(tuner, trial, fit_args, fit_kwargs, context) -> dict[str, Any]:
    from ktsweep.worker.trial_runner import start_wandb_run, trial_callbacks

    tuner = copy.copy(tuner)
    tuner.oracle = tuner.oracle.fresh()
    if isinstance(getattr(tuner, "distribution_strategy", None), StrategyForWorkers):
        tuner.distribution_strategy = tuner.distribution_strategy.build()
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
    open_trainings = OpenTrainings()
    try:
        ours, _ = trial_callbacks(
            context.get("callbacks"),
            os.path.join(trial_dir, "checkpoints"),
            run,
            {"validation_data": fit_kwargs.get("validation_data")},
        )
        user_callbacks = list(fit_kwargs.get("callbacks") or [])
        costs = [name for name in objective_names(tuner.oracle.objective) if name in COST_METRICS]
        fit_kwargs["callbacks"] = [
            *([TrialCostLogger(costs)] if costs else []),  # first: every other callback sees it
            *user_callbacks,
            *(TrainingBegunOnDemand(callback, open_trainings) for callback in ours),
            LastEpochCheckpoint(trial_dir, every_s=context.get("checkpoint_every_s", 0.0)),
        ]
        if resume is not None:
            _continue_from(tuner, trial, fit_kwargs, *resume)
        outcome = _run_and_score(tuner, trial, fit_args, fit_kwargs)
        exit_code = 0 if outcome["status"] == TrialStatus.COMPLETED else 1
    finally:
        open_trainings.end_all()
        if run is not None:
            run.finish(exit_code=exit_code)
        if initial_epoch is not None:
            trial.hyperparameters.values["tuner/initial_epoch"] = initial_epoch
        keras.backend.clear_session()
    outcome["hyperparameters"] = trial.hyperparameters.get_config()
    keep = bool(context.get("keep_resume_state"))
    if not keep:  # the trial ended: no retry resumes from it
        forget_last_checkpoint(trial_dir)
    if local:
        outcome["files"] = _trial_files(trial_dir, with_resume_state=keep)
        shutil.rmtree(tuner.directory, ignore_errors=True)  # the driver has them now
    return outcome


# Keras's batch hooks. Keras dispatches batches without waiting on the callbacks only when
# none of them has a batch hook of its own, so a wrapper forwards only those its callback has.
_BATCH_HOOKS = (
    "on_batch_begin",
    "on_batch_end",
    "on_train_batch_begin",
    "on_train_batch_end",
    "on_test_batch_begin",
    "on_test_batch_end",
    "on_predict_batch_begin",
    "on_predict_batch_end",
)


class OpenTrainings:
    """The callbacks of one trial whose training began without `on_train_begin` and has not
    ended; `end_all` ends them when the trial ends.

    Keras Tuner deep-copies a trial's callbacks before each `fit`: copies of this object are
    this object, so the copies of the callbacks report to the trial that made them.
    """

    def __init__(self):
        self.callbacks: list[TrainingBegunOnDemand] = []

    def __deepcopy__(self, memo):
        return self

    def end_all(self) -> None:
        """Call `on_train_end` of every callback whose training loop never did."""
        while self.callbacks:
            self.callbacks.pop().on_train_end()


class TrainingBegunOnDemand(keras.callbacks.Callback):
    """One of our callbacks, made to work in a training loop that calls only `set_model` and
    `on_epoch_end`, as Keras Tuner's own callbacks do.

    A `HyperModel.fit` with a training loop of its own (Keras Tuner's custom-tuner guide) calls
    `on_epoch_end` but never `on_train_begin`, where our callbacks set themselves up. The first
    epoch or batch hook then calls `on_train_begin` first, and the trial calls `on_train_end`
    when it ends. In such a loop an error of the callback only ends the callback, with a
    warning: the user's training did not ask for it. Under `fit` it is the callback unchanged.

    Args:
        callback: The Keras callback.
        open_trainings: The trial's `OpenTrainings`, which ends the training begun here.
    """

    def __init__(self, callback: keras.callbacks.Callback, open_trainings: OpenTrainings):
        super().__init__()
        self.callback = callback
        self.open_trainings = open_trainings
        self._training = False
        self._begun_on_demand = False
        self._broken = False
        self.async_safe = getattr(callback, "async_safe", False)
        for hook in _BATCH_HOOKS:
            if not _has_own(callback, hook):
                setattr(self, hook, getattr(super(), hook))

    def set_model(self, model):
        super().set_model(model)
        self.callback.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        self.callback.set_params(params)

    def on_train_begin(self, logs=None):
        self._training, self._begun_on_demand, self._broken = True, False, False
        self.callback.on_train_begin(logs)

    def on_train_end(self, logs=None):
        if self._training:
            self._training = False
            self._call("on_train_end", logs)

    def _begin_if_needed(self) -> None:
        if self._training:
            return
        self._training, self._begun_on_demand, self._broken = True, True, False
        self.open_trainings.callbacks.append(self)
        self._call("on_train_begin", None)

    def _call(self, hook: str, *args) -> None:
        if self._broken:
            return
        if not self._begun_on_demand:
            getattr(self.callback, hook)(*args)
            return
        try:
            getattr(self.callback, hook)(*args)
        except Exception as exc:
            self._broken = True
            log.warning(
                "%s stopped: it can't run in this training loop, which doesn't call "
                "on_train_begin (%s: %s). The trial goes on without it.",
                type(self.callback).__name__,
                type(exc).__name__,
                exc,
            )

    def on_epoch_begin(self, epoch, logs=None):
        self._begin_if_needed()
        self._call("on_epoch_begin", epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._begin_if_needed()
        self._call("on_epoch_end", epoch, logs)

    def on_batch_begin(self, batch, logs=None):
        self._begin_if_needed()
        self._call("on_batch_begin", batch, logs)

    def on_batch_end(self, batch, logs=None):
        self._begin_if_needed()
        self._call("on_batch_end", batch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._begin_if_needed()
        self._call("on_train_batch_begin", batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self._begin_if_needed()
        self._call("on_train_batch_end", batch, logs)

    def on_test_begin(self, logs=None):
        self._call("on_test_begin", logs)

    def on_test_end(self, logs=None):
        self._call("on_test_end", logs)

    def on_test_batch_begin(self, batch, logs=None):
        self._call("on_test_batch_begin", batch, logs)

    def on_test_batch_end(self, batch, logs=None):
        self._call("on_test_batch_end", batch, logs)

    def on_predict_begin(self, logs=None):
        self._call("on_predict_begin", logs)

    def on_predict_end(self, logs=None):
        self._call("on_predict_end", logs)

    def on_predict_batch_begin(self, batch, logs=None):
        self._call("on_predict_batch_begin", batch, logs)

    def on_predict_batch_end(self, batch, logs=None):
        self._call("on_predict_batch_end", batch, logs)


def _has_own(callback: keras.callbacks.Callback, hook: str) -> bool:
    """Whether `callback`'s `hook` is its own, not `keras.callbacks.Callback`'s no-op."""
    method = getattr(callback, hook)
    return getattr(method, "__func__", method) is not getattr(keras.callbacks.Callback, hook)


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


def _trial_files(
    trial_dir: str, recursive: bool = True, with_resume_state: bool = False
) -> dict[str, bytes]:
    """The trial folder's files for the driver's copy, less the resumable checkpoint unless
    `with_resume_state`."""
    skipped = set() if with_resume_state else {LAST_CHECKPOINT, LAST_CHECKPOINT_INFO, WORKER_INFO}
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
        kt_compat.validate_trial_results(results, objective, "Tuner.run_trial()")
        metrics = kt_compat.metrics_dict(results, objective)
        step = kt_compat.best_step(results, objective)
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

    def restoring(build):
        def build_and_restore(hp):
            model = build(hp)
            optimizer = getattr(model, "optimizer", None)
            if optimizer is not None and not optimizer.built:
                optimizer.build(model.trainable_variables)  # so its state loads too
            model.load_weights(path)
            return model

        return build_and_restore

    kt_compat.wrap_build(tuner, restoring)
    fit_kwargs["initial_epoch"] = epochs
    if "tuner/initial_epoch" in trial.hyperparameters.values:
        trial.hyperparameters.values["tuner/initial_epoch"] = epochs
    log.info("trial %s resumes from %s after epoch %d", trial.trial_id, path, epochs)


__all__ = [
    "COST_METRICS",
    "DistributedSearch",
    "OpenTrainings",
    "ParetoFrontResults",
    "StrategyForWorkers",
    "TrainingBegunOnDemand",
    "TrialCostLogger",
    "TrialOracle",
    "distribute",
    "dominates",
    "objective_names",
    "objectives_of",
    "run_tuner_trial",
    "strategy_for_workers",
]
