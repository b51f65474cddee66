"""Bayesian optimisation (`method: bayes`): Optuna's Gaussian-process sampler where PyTorch is
installed, Keras Tuner's Gaussian-process oracle where it is not."""

from __future__ import annotations

import functools
import importlib.util
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import optuna

from ktsweep.service.search.base import ACTIVE_STATES, TrialRecord
from ktsweep.service.search.keras_tuner_oracle import KerasTunerOracleSearch
from ktsweep.service.search.tpe_search import TpeSearch

log = logging.getLogger(__name__)


class KerasTunerBayesSearch(KerasTunerOracleSearch):
    """Suggests what a Gaussian process of the results so far expects to be best.

    What `method: bayes` runs where PyTorch is not installed (see `bayes_search_class`).
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
    """Suggests what a Gaussian process of the results so far expects to improve most.

    Optuna's `GPSampler` (it needs PyTorch: `gp_sampler_available`). The first
    `max(5, 2 * dimensions)` trials are random, as Ax starts its Bayesian optimisation; then a
    Matern-5/2 process with automatic relevance determination is fitted to the finished trials
    and the next trial maximises its log expected improvement. Running trials are in the study
    as running trials, so Optuna's batch acquisition (qLogEI) places parallel trials apart; with
    `metric.impute_while_running` they count as finished at their imputed value instead.
    Conditional dimensions are drawn at random, as `GPSampler` does.

    It searches the same unit space as `tpe` and is driven the same way: the study is rebuilt
    from the trials learned so far, trial `n` seeded from the spec's seed and `n`, so a
    restarted controller that `restore`s the finished trials suggests exactly what it would
    have suggested, and prior trials of a warm start come first in the study.

    `bench/single_objective.py` measures it against Ax's published figures on Branin and
    Hartmann-6 after 25 trials (bench/RESULTS.md).
    """

    @property
    def startup_trials(self) -> int:
        """Random trials before the first fitted suggestion: `max(5, 2 * dimensions)`."""
        searched = sum(not dimension.is_constant for dimension in self.space.dimensions)
        return max(5, 2 * searched)

    def make_sampler(self, number: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.GPSampler(
            seed=self._seed(number),
            n_startup_trials=self.startup_trials,
            warn_independent_sampling=False,
        )

    def study_for(self, number: int, trials: list[TrialRecord]) -> optuna.Study:
        study = super().study_for(number, trials)
        for record in trials:
            if record.state not in ACTIVE_STATES or record.number in self.finished:
                continue
            if self.value_while_running(record) is not None:
                continue  # already in the study, finished at its imputed value
            study.add_trial(self._running_trial(record.hyperparameters))
        return study

    def _running_trial(self, config: dict[str, Any]) -> optuna.trial.FrozenTrial:
        finished = self._frozen_trial(config, 0.0)
        return optuna.trial.create_trial(
            params=finished.params,
            distributions=finished.distributions,
            state=optuna.trial.TrialState.RUNNING,
        )


@functools.cache
def gp_sampler_available() -> bool:
    """Whether `GaussianProcessSearch` can run here (Optuna's `GPSampler` needs PyTorch)."""
    return importlib.util.find_spec("torch") is not None


def bayes_search_class() -> type[GaussianProcessSearch] | type[KerasTunerBayesSearch]:
    """What `method: bayes` runs: Optuna's Gaussian process (`GaussianProcessSearch`) where
    PyTorch is installed (the `torch` extra), else Keras Tuner's oracle (`KerasTunerBayesSearch`).

    Optuna's reaches Ax's published figures on Branin and Hartmann-6 in 25 trials where Keras
    Tuner's does not (bench/RESULTS.md); both restore exactly after a restart.
    """
    if gp_sampler_available():
        return GaussianProcessSearch
    log.info(
        "method bayes: PyTorch is not installed, so Keras Tuner's Gaussian process runs "
        "instead of Optuna's (install it with `pip install 'ktsweep[torch]'`)"
    )
    return KerasTunerBayesSearch
