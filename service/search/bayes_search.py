"""Bayesian optimisation: Keras Tuner's Gaussian-process oracle."""

from __future__ import annotations

from typing import Any

from service.search.keras_tuner_oracle import KerasTunerOracleSearch


class BayesSearch(KerasTunerOracleSearch):
    """Suggests what a Gaussian process of the results so far expects to be best.

    Keras Tuner's `BayesianOptimizationOracle`: the first `max(3 * dimensions, 3)` trials are
    random; then a Matern-kernel Gaussian process is fitted to the finished trials (running ones
    count with a pessimistic guess, so parallel trials differ) and the next trial minimises its
    lower confidence bound. Failed trials count with the spec's `metric.impute` value.
    """

    def make_oracle(self, objective: Any, hyperparameters: Any, seed: int | None) -> Any:
        return self._kt.oracles.BayesianOptimizationOracle(
            objective=objective,
            max_trials=None,
            hyperparameters=hyperparameters,
            seed=seed,
            max_consecutive_failed_trials=10**9,
        )
