"""Runs one trial: build the model with the trial's hyperparameters, fit it, report, return."""

from __future__ import annotations

import inspect
import logging
import os
import traceback
from typing import Any

import keras
import keras_tuner as kt
import wandb

from worker.entry_points import resolve_entry_point
from worker.reporter import HttpReporter, Reporter, ReportingCallback
from worker.trial_spec import TrialResult, TrialSpec

log = logging.getLogger(__name__)


def run_trial(spec: TrialSpec, reporter: Reporter | None = None) -> TrialResult:
    """Build, fit and report one trial; raises whatever the user's code raises.

    The trial gets one W&B run (group = sweep, name = trial id, config = hyperparameters), our
    callbacks, and a callback that reports each epoch to the controller and stops training when
    the controller answers "stop".

    Args:
        spec: The trial to run.
        reporter: Where per-epoch reports go. Default: an `HttpReporter` to `spec.report_url`
            when it is set, else none.

    Returns:
        The trial's `TrialResult` ("completed" or "stopped").
    """
    build_model = resolve_entry_point(spec.hypermodel)
    load_data = resolve_entry_point(spec.data)
    fit_data = load_fit_data(load_data)
    hp = hyperparameters_for(spec.hyperparameters)

    own_reporter = None
    if reporter is None and spec.report_url:
        reporter = own_reporter = HttpReporter(spec.report_url, spec.trial_id, spec.report_token)
    run = _start_wandb_run(spec)
    exit_code = 1
    try:
        if spec.resume_from:
            model = keras.saving.load_model(spec.resume_from)
        else:
            model = build_model(hp)
        reporting = ReportingCallback(reporter)
        callbacks, checkpoint = _trial_callbacks(spec, run, fit_data)
        fit_kwargs = {"verbose": 0, **spec.fit}
        if spec.initial_epoch:
            fit_kwargs["initial_epoch"] = spec.initial_epoch
        model.fit(**fit_data, **fit_kwargs, callbacks=[*callbacks, reporting])
        history = reporting.history
        state = "stopped" if reporting.stopped_early else "completed"
        if run is not None:
            run.summary["stopped_early"] = reporting.stopped_early
        exit_code = 0
        return TrialResult(
            trial_id=spec.trial_id,
            state=state,
            metrics=history[-1]["metrics"] if history else {},
            history=history,
            epochs=history[-1]["step"] if history else spec.initial_epoch,
            wandb=wandb_run_link(run),
            checkpoint=_checkpoint_path(checkpoint),
        )
    finally:
        if run is not None:
            run.finish(exit_code=exit_code)
        if own_reporter is not None:
            own_reporter.close()
        keras.backend.clear_session()


def run_trial_safely(spec: TrialSpec, reporter: Reporter | None = None) -> TrialResult:
    """`run_trial`, but an exception becomes a "failed" result carrying its traceback."""
    try:
        return run_trial(spec, reporter)
    except Exception:
        log.exception("trial %s failed", spec.trial_id)
        return TrialResult(trial_id=spec.trial_id, state="failed", error=traceback.format_exc())


def hyperparameters_for(values: dict[str, Any]) -> kt.HyperParameters:
    """A `HyperParameters` whose `hp.Int/Float/Choice/...` calls return the trial's values.

    Nested configs are flattened with "/" (Keras Tuner's name-scope separator), so
    `{"optimizer": {"lr": 0.1}}` answers `hp.Float("optimizer/lr", ...)`.
    """
    hp = kt.HyperParameters()
    hp.values.update(_flatten(values))
    return hp


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{name}/"))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


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
    settings = spec.wandb or {}
    mode = settings.get("mode") or os.environ.get("WANDB_MODE") or "offline"
    directory = settings.get("dir")
    if directory:
        os.makedirs(directory, exist_ok=True)
    return wandb.init(
        project=settings.get("project") or "ktsweep",
        entity=settings.get("entity"),
        group=spec.sweep_id,
        name=spec.trial_id,
        job_type="trial",
        tags=settings.get("tags"),
        config=spec.hyperparameters,
        mode=mode,
        dir=directory,
        reinit="finish_previous",
        settings=wandb.Settings(silent=True, console="off"),
    )


def _trial_callbacks(spec: TrialSpec, run, fit_data: dict[str, Any]):
    """Our callbacks as the spec's `callbacks:` section asks; returns (list, checkpoint)."""
    config = spec.callbacks or {}
    active = run is not None and not run.disabled
    callbacks: list[keras.callbacks.Callback] = []
    checkpoint = None
    if not active:
        return callbacks, checkpoint
    if config.get("legacy"):
        from callbacks import WandbCallback

        callbacks.append(WandbCallback(save_model=False))
    elif config.get("metrics_logger", {"log_freq": "epoch"}) is not None:
        from callbacks import MetricsLogger

        callbacks.append(MetricsLogger(**config.get("metrics_logger", {"log_freq": "epoch"})))
    if config.get("checkpoint") is not None and spec.checkpoint_dir:
        from callbacks import ModelCheckpoint

        checkpoint = ModelCheckpoint(filepath=spec.checkpoint_dir, **config["checkpoint"])
        callbacks.append(checkpoint)
    if config.get("eval_table"):
        callbacks.append(_eval_table_callback(config["eval_table"], fit_data))
    return callbacks, checkpoint


def _eval_table_callback(config: str | dict[str, Any], fit_data: dict[str, Any]):
    if isinstance(config, str):
        config = {"callback": config}
    kwargs = dict(config)
    callback_class = resolve_entry_point(kwargs.pop("callback"))
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
    link: dict[str, Any] = {"run_id": run.id, "project": run.project, "mode": run.settings.mode}
    if run.settings._offline:
        run_dir = run.settings.sync_dir
        link.update(run_dir=run_dir, sync_command=f"wandb sync {run_dir}", url=None)
    else:
        link["url"] = run.url
    return link
