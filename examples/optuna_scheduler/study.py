"""Scheduler code for a `method: custom` sweep with `scheduler: {engine: optuna}`.

The controller imports this file in a child process of its own (never in its own process) and
calls the functions the spec names:

- `optimizer()` returns the study's sampler (or a whole `optuna.Study`); with a sampler, the
  study's directions are the sweep's goals (`metric`, or `metrics`).
- `search_space(trial)` defines a trial's hyperparameters with `trial.suggest_*`; here, those
  of the digits MLP (`ktsweep.examples.digits:build_model`).

See `sweep.yaml` next to this file.
"""

from __future__ import annotations

import optuna


def optimizer() -> optuna.samplers.BaseSampler:
    """A seeded TPE sampler that starts modelling after 2 random trials (Optuna's default: 10)."""
    return optuna.samplers.TPESampler(n_startup_trials=2, seed=7)


def search_space(trial: optuna.Trial) -> None:
    """The digits MLP's width, dropout and learning rate (the trial's parameters are its
    hyperparameters, as nothing is returned)."""
    trial.suggest_int("units", 16, 128, step=16)
    trial.suggest_float("dropout", 0.0, 0.5)
    trial.suggest_float("learning_rate", 1e-3, 3e-2, log=True)
