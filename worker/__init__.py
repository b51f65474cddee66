"""Runs trials: one trial in this process (`run_trial`), or many on Ray (`RayTrialExecutor`).

Names are imported on first use, so launching trials does not import Keras.
"""

import importlib

_EXPORTS = {
    "EntryPointError": "ktsweep.worker.entry_points",
    "resolve_entry_point": "ktsweep.worker.entry_points",
    "HttpReporter": "ktsweep.worker.reporter",
    "ReportingCallback": "ktsweep.worker.reporter",
    "RayTrialExecutor": "ktsweep.worker.ray_runner",
    "DistributedSearch": "ktsweep.worker.distributed_search",
    "distribute": "ktsweep.worker.distributed_search",
    "LastEpochCheckpoint": "ktsweep.worker.last_checkpoint",
    "run_program_trial": "ktsweep.worker.program_trial",
    "ensure_ray": "ktsweep.worker.ray_runner",
    "ray_options": "ktsweep.worker.ray_runner",
    "hyperparameters_for": "ktsweep.worker.trial_runner",
    "load_fit_data": "ktsweep.worker.trial_runner",
    "run_trial": "ktsweep.worker.trial_runner",
    "run_trial_safely": "ktsweep.worker.trial_runner",
    "TrialResult": "ktsweep.worker.trial_spec",
    "TrialSpec": "ktsweep.worker.trial_spec",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ktsweep.worker' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
