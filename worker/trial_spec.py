"""What a worker is told about one trial, and what it tells back."""

from __future__ import annotations

import socket
from dataclasses import asdict, dataclass, field
from typing import Any

from ktsweep.lifecycle import TrialState


@dataclass
class TrialSpec:
    """Everything a worker needs to run one trial; plain data, so it crosses Ray as is.

    Attributes:
        trial_id: The trial's id; also the W&B run's name.
        hyperparameters: The trial's configuration (nested dicts for nested parameters).
        hypermodel: `module:function` building a compiled Keras model from a
            `keras_tuner.HyperParameters`. None for a `program` trial.
        data: `module:function` returning the training data (see `ktsweep.worker.load_fit_data`).
            None for a `program` trial.
        sweep_id: The sweep's id; the W&B run's group.
        sweep_name: The sweep's name, recorded in the W&B run's config.
        fit: Keyword arguments for `model.fit` (`epochs`, `batch_size`, ...).
        metric: The metric the sweep optimises, recorded in the result.
        objectives: The metrics a multi-objective sweep optimises (its `metrics` names), or
            None. The W&B run's summary then carries their final values under `objectives`.
        wandb: `project`, `entity`, `mode` ("online" | "offline" | "disabled"), `dir`, `tags`.
        callbacks: The spec's `callbacks:` section.
        checkpoint_dir: Folder for this trial's checkpoints, or None for no checkpoints.
        report_url: The controller's base URL for per-epoch reports, or None to not report.
        report_token: Bearer token for the reports.
        resources: Ray resources (`cpu`, `gpu`, `tpu`, `memory`) for the trial.
        resume_from: A `.keras` checkpoint to continue from instead of building the model
            (a retried trial, or a Hyperband continuation), or None.
        initial_epoch: Epochs already trained when resuming (passed to `fit`). Default 0.
        timeout_s: Seconds the trial may run before it is ended as "failed"; None for no limit.
        program: A W&B-sweep training script to run instead of `hypermodel`/`data`
            (see `ktsweep.worker.program_trial`), or None.
        command: The W&B sweep `command` for `program`, with macros such as `${env}`,
            `${interpreter}`, `${program}`, `${args}`; None for W&B's default.
        working_dir: Folder the `program` runs in (relative `program` paths start there).
            Default: the worker's current folder.
        checkpoint_every_s: Seconds between the resumable `last.keras` checkpoints saved at
            the end of epochs (the last epoch is always saved). Default 0: every epoch.
        report_waits: Whether each report waits for the controller's answer, which a sweep
            with an early-termination rule needs; when False, reports go out in the background
            and training never waits for them. Default True.
        report_every_s: With background reports, the least time between two of the trial's
            reports: a report due sooner waits, and a later one replaces it (the result carries
            every step). Default 1.
    """

    trial_id: str
    hyperparameters: dict[str, Any]
    hypermodel: str | None = None
    data: str | None = None
    sweep_id: str | None = None
    sweep_name: str | None = None
    fit: dict[str, Any] = field(default_factory=lambda: {"epochs": 1})
    metric: str | None = None
    objectives: list[str] | None = None
    wandb: dict[str, Any] = field(default_factory=dict)
    callbacks: dict[str, Any] = field(default_factory=dict)
    checkpoint_dir: str | None = None
    report_url: str | None = None
    report_token: str | None = None
    resources: dict[str, Any] = field(default_factory=dict)
    resume_from: str | None = None
    initial_epoch: int = 0
    timeout_s: float | None = None
    program: str | None = None
    command: list[str] | None = None
    working_dir: str | None = None
    checkpoint_every_s: float = 0.0
    report_waits: bool = True
    report_every_s: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# The end of a trial taken back before it started (it waited in a lane behind another).
WITHDRAWN = TrialState.WITHDRAWN.value


@dataclass
class TrialResult:
    """How a trial ended.

    Attributes:
        trial_id: The trial's id.
        state: "completed", "stopped" (ended early on the controller's word), "failed",
            "cancelled", or "lost" (the worker process or its node died; `checkpoint` and
            `epochs` then say where to resume from).
        metrics: The last value of every metric.
        history: One entry per epoch: `{"step": epoch_number, "metrics": {...}}`.
        epochs: Epochs run.
        wandb: The W&B run link: `url` when online; `run_dir` and `sync_command` when offline.
        checkpoint: Path of the checkpoint to resume from or use: the best one saved by the
            `checkpoint` callback when there is one, else the trial's latest epoch
            (`last.keras` in its checkpoint folder); None when nothing was saved.
        error: The traceback when the trial failed.
        node: The Ray node it ran on: `id`, `ip`, `hostname`
            (see `ktsweep.worker.trial_spec.node_info`).
        ended_at: When the launcher learned that the trial's task ended (Unix time), or None.
    """

    trial_id: str
    state: str
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    epochs: int = 0
    wandb: dict[str, Any] | None = None
    checkpoint: str | None = None
    error: str | None = None
    node: dict[str, str] | None = None
    ended_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def node_info() -> dict[str, str]:
    """Where this process runs: its Ray node's `id` and `ip` (when Ray is connected) and the
    machine's `hostname`."""
    info = {"hostname": socket.gethostname()}
    try:
        import ray

        if ray.is_initialized():
            info["id"] = ray.get_runtime_context().get_node_id()
            info["ip"] = ray.util.get_node_ip_address()
    except Exception:  # Ray absent or half started: the hostname still says where
        pass
    return info


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as flat names joined with "/" (Keras Tuner's name-scope separator)."""
    flat: dict[str, Any] = {}
    for name, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten_config(value, f"{prefix}{name}/"))
        else:
            flat[f"{prefix}{name}"] = value
    return flat
