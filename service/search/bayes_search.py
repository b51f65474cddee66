"""Bayesian optimisation: Keras Tuner's Gaussian-process oracle (`method: bayes`), and Optuna's
Gaussian-process sampler as a second engine."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import optuna

from ktsweep.service.search.base import TrialRecord
from ktsweep.service.search.keras_tuner_oracle import KerasTunerOracleSearch
from ktsweep.service.search.tpe_search import TpeSearch


class BayesSearch(KerasTunerOracleSearch):
    """Suggests what a Gaussian process of the results so far expects to be best.

    Keras Tuner's `BayesianOptimizationOracle`: the first `max(3 * dimensions, 3)` trials are
    random; then a Matern-kernel Gaussian process is fitted to the finished trials and the next
    trial minimises its lower confidence bound. Failed trials count with the spec's
    `metric.impute` value. Running trials count with a pessimistic guess of the process, so
    parallel trials differ, or, with `metric.impute_while_running`, with that value: as
    finished trials while the oracle suggests, running again afterwards.
    """

    def make_oracle(self, objective: Any, hyperparameters: Any, seed: int | None) -> Any:
        return self._kt.oracles.BayesianOptimizationOracle(
            objective=objective,
            max_trials=None,
            hyperparameters=hyperparameters,
            seed=seed,
            max_consecutive_failed_trials=10**9,
        )

    def suggest(self, number: int, trials: list[TrialRecord]) -> Any:
        with self._running_trials_counted(trials):
            return super().suggest(number, trials)

    @contextmanager
    def _running_trials_counted(self, trials: list[TrialRecord]) -> Iterator[None]:
        """While inside, the running trials that count while they run (`value_while_running`)
        are completed trials of the oracle with that score."""
        counted = []
        for record in trials:
            value = self.value_while_running(record)
            tuner_id = f"ktsweep-{record.number}"
            trial = self.oracle.ongoing_trials.get(tuner_id)
            if value is None or trial is None:
                continue
            counted.append((tuner_id, trial))
            del self.oracle.ongoing_trials[tuner_id]
            trial.status, trial.score = "COMPLETED", value
        try:
            yield
        finally:
            for tuner_id, trial in counted:
                trial.status, trial.score = "RUNNING", None
                self.oracle.ongoing_trials[tuner_id] = trial


class GaussianProcessSearch(TpeSearch):
    """Suggests what Optuna's Gaussian process of the results so far expects to improve most.

    Optuna's `GPSampler` (it needs PyTorch: `gp_sampler_available`): the first 10 trials are
    random; then a Matern-5/2 process with automatic relevance determination is fitted to the
    finished trials and the next trial maximises its log expected improvement. It searches the
    same unit space as `tpe` and is driven the same way (the study is rebuilt from the trials
    learned so far, trial `n` seeded from the spec's seed and `n`), so restarts and warm starts
    behave as with `tpe`. Conditional dimensions are drawn at random, as `GPSampler` does.

    Not what `method: bayes` runs (that is `BayesSearch`): kept here so the two engines can be
    compared on the same problems (`bench/single_objective.py`).
    """

    def make_sampler(self, number: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.GPSampler(seed=self._seed(number), warn_independent_sampling=False)


def gp_sampler_available() -> bool:
    """Whether `GaussianProcessSearch` can run here (Optuna's `GPSampler` needs PyTorch)."""
    return importlib.util.find_spec("torch") is not None
