"""Runs one trial: build the model with the trial's hyperparameters, fit it, report, return."""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import os
import socket
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt

from ktsweep.lifecycle import TrialState
from ktsweep.worker.compat.tensorflow import gradient_registry
from ktsweep.worker.entry_points import resolve_entry_point
from ktsweep.worker.last_checkpoint import (
    LastEpochCheckpoint,
    forget_last_checkpoint,
    write_worker_info,
)
from ktsweep.worker.reporter import HttpReporter, Reporter, ReportingCallback
from ktsweep.worker.resources import limit_gpu_memory
from ktsweep.worker.trial_spec import TrialResult, TrialSpec, flatten_config, node_info

log = logging.getLogger(__name__)


def run_trial(spec: TrialSpec, reporter: Reporter | None = None) -> TrialResult:
    """Build, fit and report one trial; raises whatever the user's code raises.

    The trial gets one W&B run (group = sweep, name = trial id, config = hyperparameters), our
    callbacks, a `last.keras` checkpoint of its latest epoch in `spec.checkpoint_dir` (what a
    retry resumes from), and a callback that reports each epoch (with that checkpoint) to the
    controller and stops training when the controller answers "stop". A spec with a `program`
    runs that script instead (see `ktsweep.worker.program_trial`).

    Args:
        spec: The trial to run.
        reporter: Where per-epoch reports go. Default: an `HttpReporter` to `spec.report_url`
            when it is set, else none.

    Returns:
        The trial's `TrialResult` ("completed" or "stopped").
    """
    own_reporter = None
    result_has_history = False
    if reporter is None and spec.report_url:
        reporter = own_reporter = HttpReporter(
            spec.report_url,
            spec.trial_id,
            spec.report_token,
            background=not spec.report_waits,
            every_s=spec.report_every_s,
        )
        own_reporter.started(node_info())
    try:
        write_worker_info(
            spec.checkpoint_dir,
            trial_id=spec.trial_id,
            resume_from=spec.resume_from,
            initial_epoch=spec.initial_epoch,
        )
        if spec.program:
            from ktsweep.worker.program_trial import run_program_trial

            return run_program_trial(spec, reporter)
        result = _run_keras_trial(spec, reporter)
        result_has_history = bool(result.history)
        return result
    finally:
        if own_reporter is not None:
            # Reports still queued in the background are in the result's history, which the
            # controller records in their place: the result need not wait for them.
            own_reporter.close(send_queued=not result_has_history)


def _run_keras_trial(spec: TrialSpec, reporter: Reporter | None) -> TrialResult:
    if not spec.hypermodel or not spec.data:
        raise ValueError(
            f"trial {spec.trial_id} names no `hypermodel` and `data` (nor a `program`); set "
            "`trial.hypermodel` and `trial.data` to 'package.module:function' entry points."
        )
    limit_gpu_memory()
    build_model = resolve_entry_point(spec.hypermodel)
    load_data = resolve_entry_point(spec.data)
    fit_data = load_fit_data(load_data)
    hp = hyperparameters_for(spec.hyperparameters)

    with custom_gradients_released():
        return _fit_keras_trial(spec, reporter, build_model, fit_data, hp)


def _fit_keras_trial(spec: TrialSpec, reporter: Reporter | None, build_model, fit_data, hp):
    run = _start_wandb_run(spec)
    exit_code = 1
    try:
        if spec.resume_from:
            model = keras.saving.load_model(resolve_checkpoint(spec.resume_from))
        else:
            model = build_model(hp)
        callbacks, checkpoint = trial_callbacks(spec.callbacks, spec.checkpoint_dir, run, fit_data)
        last = None
        if spec.checkpoint_dir:
            if not spec.resume_from:
                forget_last_checkpoint(spec.checkpoint_dir)
            last = LastEpochCheckpoint(spec.checkpoint_dir, every_s=spec.checkpoint_every_s)
            callbacks.append(last)
        reporting = ReportingCallback(reporter, spec.initial_epoch, last_checkpoint=last)
        fit_kwargs = {"verbose": 0, **spec.fit}
        if spec.initial_epoch:
            fit_kwargs["initial_epoch"] = spec.initial_epoch
        started = time.perf_counter()
        model.fit(**fit_data, **fit_kwargs, callbacks=[*callbacks, reporting])
        cost = trial_cost(model, time.perf_counter() - started)
        history = reporting.history
        state = (TrialState.STOPPED if reporting.stopped_early else TrialState.COMPLETED).value
        metrics = {**(history[-1]["metrics"] if history else {}), **cost}
        if run is not None:
            run.summary["stopped_early"] = reporting.stopped_early
            for name, value in cost.items():
                run.summary[name] = value
            if spec.objectives:
                run.summary["objectives"] = {name: metrics.get(name) for name in spec.objectives}
        exit_code = 0
        return TrialResult(
            trial_id=spec.trial_id,
            state=state,
            metrics=metrics,
            history=history,
            epochs=history[-1]["step"] if history else spec.initial_epoch,
            wandb=wandb_run_link(run),
            checkpoint=_checkpoint_path(checkpoint) or (last.path if last else None),
        )
    finally:
        if run is not None:
            run.finish(exit_code=exit_code)
        # Drop the trial's graph state; skip the full gc.collect() it would also run (about
        # 0.5 s with TensorFlow loaded): Python's own collector still reclaims the cycles.
        keras.backend.clear_session(free_memory=False)


def trial_cost(model: keras.Model, fit_time_s: float) -> dict[str, float]:
    """What a Keras trial cost: its model's parameter count and the wall time of its `fit`.

    Recorded next to what the trial logged (`model/parameters`, `model/fit_time_s`), so a
    sweep can minimise either one as an objective without any code of the user's. A resumed
    trial's fit time is that of its last attempt.

    Args:
        model: The fitted model.
        fit_time_s: Seconds `model.fit` took.
    """
    # The weights it holds: `count_params()` raises for a model that never built any (one whose
    # own `fit` trains nothing Keras can see), which then holds none.
    parameters = sum(math.prod(weight.shape) for weight in model.weights)
    return {"model/parameters": float(parameters), "model/fit_time_s": fit_time_s}


@contextlib.contextmanager
def custom_gradients_released() -> Iterator[None]:
    """Forgets the gradient functions that TensorFlow registered during the block.

    In graph mode each `tf.custom_gradient` call registers its gradient function under a new
    name in a process-wide registry that never lets go of it, and with it the whole traced
    graph: every trial's model would stay in memory (about 5 MB for the digits MLP) for as long
    as the worker process runs. A trial's graphs are not traced again after it ends, so the
    names it registered can go. A no-op where TensorFlow is not loaded.
    """
    registry = gradient_registry()
    before = set(registry) if registry is not None else set()
    try:
        yield
    finally:
        if registry is not None:
            for name in [name for name in list(registry) if name not in before]:
                if isinstance(name, str) and name.startswith("CustomGradient-"):
                    registry.pop(name, None)


def run_trial_safely(spec: TrialSpec, reporter: Reporter | None = None) -> TrialResult:
    """`run_trial`, but an exception becomes a "failed" result carrying its traceback."""
    try:
        return run_trial(spec, reporter)
    except Exception:
        log.exception("trial %s failed", spec.trial_id)
        return TrialResult(
            trial_id=spec.trial_id, state=TrialState.FAILED.value, error=traceback.format_exc()
        )


def hyperparameters_for(values: dict[str, Any]) -> kt.HyperParameters:
    """A `HyperParameters` whose `hp.Int/Float/Choice/...` calls return the trial's values.

    Nested configs are flattened with "/" (Keras Tuner's name-scope separator), so
    `{"optimizer": {"lr": 0.1}}` answers `hp.Float("optimizer/lr", ...)`.
    """
    hp = kt.HyperParameters()
    hp.values.update(flatten_config(values))
    return hp


def load_fit_data(load_data) -> dict[str, Any]:
    """Call the data entry point and return keyword arguments for `model.fit`.

    The entry point returns either a dict (`x`, `y`, `validation_data`, ...: any `fit`
    arguments) or a pair `((x, y), (x_val, y_val))`.
    """
    data = load_data()
    if isinstance(data, dict):
        return dict(data)
    if isinstance(data, tuple) and len(data) == 2 and all(len(part) == 2 for part in data):
        (x, y), validation = data
        return {"x": x, "y": y, "validation_data": tuple(validation)}
    raise TypeError(
        "the data entry point must return dict(x=..., y=..., validation_data=(...)) or "
        f"((x, y), (x_val, y_val)); it returned {type(data).__name__}."
    )


def _start_wandb_run(spec: TrialSpec):
    return start_wandb_run(spec.wandb, spec.trial_id, spec.sweep_id, spec.hyperparameters)


def start_wandb_run(
    settings: dict[str, Any] | None,
    name: str,
    group: str | None,
    config: dict[str, Any],
):
    """One W&B run for a trial (mode from `settings`, else `WANDB_MODE`, else offline).

    Args:
        settings: `project`, `entity`, `mode`, `dir`, `tags`.
        name: The run's name (the trial id).
        group: The run's group (the sweep).
        config: The trial's hyperparameters.
    """
    settings = settings or {}
    mode = settings.get("mode") or os.environ.get("WANDB_MODE") or "offline"
    directory = settings.get("dir")
    if directory:
        os.makedirs(directory, exist_ok=True)
    import wandb  # only where a trial logs to W&B: the library runs without it

    return wandb.init(
        project=settings.get("project") or "ktsweep",
        entity=settings.get("entity"),
        group=group,
        name=name,
        job_type="trial",
        tags=settings.get("tags"),
        config=config,
        mode=mode,
        dir=directory,
        reinit="finish_previous",
        # A disabled run records nothing: skip the `git` call that finds the repository.
        settings=wandb.Settings(silent=True, console="off", disable_git=mode == "disabled"),
    )


def trial_callbacks(
    config: dict[str, Any] | None,
    checkpoint_dir: str | None,
    run,
    fit_data: dict[str, Any] | None = None,
) -> tuple[list[keras.callbacks.Callback], Any]:
    """Our callbacks as a spec's `callbacks:` section asks; returns `(callbacks, checkpoint)`.

    Args:
        config: The `callbacks:` section (`metrics_logger`, `checkpoint`, `eval_table`,
            `legacy`); None means the metrics logger only.
        checkpoint_dir: Folder for the `checkpoint` callback's files; None for no checkpoints.
        run: The trial's W&B run; without an active run no callback is made.
        fit_data: The trial's `fit` arguments, for an eval-table callback's validation data.
    """
    config = config or {}
    fit_data = fit_data or {}
    active = run is not None and not run.disabled
    callbacks: list[keras.callbacks.Callback] = []
    checkpoint = None
    if not active:
        return callbacks, checkpoint
    if config.get("legacy"):
        from ktsweep.callbacks import WandbCallback

        callbacks.append(WandbCallback(save_model=False))
    elif config.get("metrics_logger", {"log_freq": "epoch"}) is not None:
        from ktsweep.callbacks import MetricsLogger

        callbacks.append(MetricsLogger(**config.get("metrics_logger", {"log_freq": "epoch"})))
    if config.get("checkpoint") is not None and checkpoint_dir:
        from ktsweep.callbacks import ModelCheckpoint

        checkpoint = ModelCheckpoint(filepath=checkpoint_dir, **config["checkpoint"])
        callbacks.append(checkpoint)
    if config.get("eval_table"):
        callbacks.append(_eval_table_callback(config["eval_table"], fit_data))
    return callbacks, checkpoint


def check_eval_callback(entry_point: str, options: list[str]) -> type:
    """The Keras callback class an `eval_table` entry point names, checked with its options.

    It must be a `keras.callbacks.Callback` subclass defined in the module named, and the spec
    may set only the arguments its `__init__` declares by name.

    Raises:
        EntryPointError: the entry point is not allowed or not found.
        TypeError: it is not a Keras callback class, or an option is not one of its arguments.
    """
    callback_class = resolve_entry_point(entry_point)
    if not (
        isinstance(callback_class, type) and issubclass(callback_class, keras.callbacks.Callback)
    ):
        raise TypeError(
            f"'{entry_point}' is not a Keras callback class; `eval_table.callback` names a "
            "subclass of keras.callbacks.Callback (e.g. of ktsweep.callbacks.EvalCallback)."
        )
    named = {
        name
        for name, parameter in inspect.signature(callback_class).parameters.items()
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    }
    unknown = sorted(set(options) - named)
    if unknown:
        raise TypeError(
            f"{callback_class.__name__} has no argument {', '.join(map(repr, unknown))}; its "
            f"arguments are {', '.join(sorted(named)) or 'none'}. Remove the others."
        )
    return callback_class


def _eval_table_callback(config: str | dict[str, Any], fit_data: dict[str, Any]):
    if isinstance(config, str):
        config = {"callback": config}
    kwargs = dict(config)
    entry_point = kwargs.pop("callback")
    callback_class = check_eval_callback(entry_point, list(kwargs))
    parameters = inspect.signature(callback_class).parameters
    if "validation_data" in parameters and "validation_data" not in kwargs:
        kwargs["validation_data"] = fit_data.get("validation_data")
    return callback_class(**kwargs)


def _checkpoint_path(checkpoint) -> str | None:
    if checkpoint is None:
        return None
    return getattr(checkpoint, "best_saved_path", None) or getattr(
        checkpoint, "last_saved_path", None
    )


def wandb_run_link(run) -> dict[str, Any] | None:
    """The run's link: its URL when online; its folder and `wandb sync` command when offline."""
    if run is None or run.disabled:
        return None
    link: dict[str, Any] = {
        "run_id": run.id,
        "project": run.project,
        "entity": run.entity or None,  # offline: none until `wandb sync` picks the login's
        "mode": run.settings.mode,
    }
    if run.offline:
        run_dir = run.settings.sync_dir
        link.update(run_dir=run_dir, sync_command=f"wandb sync {run_dir}", url=None)
    else:
        link["url"] = run.url
    return link


WANDB_ARTIFACT_SCHEME = "wandb-artifact://"


def resolve_checkpoint(reference: str) -> str:
    """A local path for a checkpoint to resume from: a path, or a W&B model artifact.

    `wandb-artifact://entity/project/name:alias` is downloaded (W&B online). A path that
    this node cannot see raises an error that says how to share checkpoints between nodes.
    """
    if reference.startswith(WANDB_ARTIFACT_SCHEME):
        name = reference[len(WANDB_ARTIFACT_SCHEME) :]
        import wandb

        directory = wandb.Api().artifact(name, type="model").download()
        files = sorted(Path(directory).glob("*.keras")) or sorted(Path(directory).iterdir())
        if not files:
            raise FileNotFoundError(f"W&B artifact '{name}' holds no checkpoint file.")
        return str(files[-1])
    if not os.path.exists(reference):
        raise FileNotFoundError(
            f"checkpoint '{reference}' does not exist on this node ({socket.gethostname()}). "
            "Point KTSWEEP_ARTIFACT_DIR at a folder every node shares (NFS, a mounted bucket), "
            "or run W&B online and resume from the checkpoint's model artifact "
            f"('{WANDB_ARTIFACT_SCHEME}entity/project/run_<id>_model:latest')."
        )
    return reference
