"""Runs trials: one trial in this process (`run_trial`), or many on Ray (`RayTrialExecutor`).

Names are imported on first use, so launching trials does not import Keras.
"""

import importlib

_EXPORTS = {
    "EntryPointError": "worker.entry_points",
    "resolve_entry_point": "worker.entry_points",
    "HttpReporter": "worker.reporter",
    "ReportingCallback": "worker.reporter",
    "RayTrialExecutor": "worker.ray_runner",
    "DistributedSearch": "worker.distributed_search",
    "distribute": "worker.distributed_search",
    "LastEpochCheckpoint": "worker.last_checkpoint",
    "run_program_trial": "worker.program_trial",
    "ensure_ray": "worker.ray_runner",
    "ray_options": "worker.ray_runner",
    "hyperparameters_for": "worker.trial_runner",
    "load_fit_data": "worker.trial_runner",
    "run_trial": "worker.trial_runner",
    "run_trial_safely": "worker.trial_runner",
    "TrialResult": "worker.trial_spec",
    "TrialSpec": "worker.trial_spec",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'worker' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
