"""`method: custom` with `scheduler: {engine: optuna}`: an Optuna study, driven by ask-and-tell."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import optuna

from ktsweep.service.pareto import objective_values
from ktsweep.service.search.base import TrialRecord
from ktsweep.service.search.bayes_search import GaussianProcessSearch, gp_sampler_available
from ktsweep.service.spec import objectives_of

if TYPE_CHECKING:
    from ktsweep.service.search.warm_start import PriorTrial


class OptunaStudySearch(GaussianProcessSearch):
    """Suggests trials from an Optuna study whose directions are the sweep's goals.

    With one objective (`metric`): Optuna's `GPSampler`, as `method: bayes` runs it (see
    `GaussianProcessSearch`), or `TPESampler` where PyTorch is not installed.

    With several (`metrics`): one direction per objective and Optuna's multi-objective
    `TPESampler` (MOTPE): the first 10 trials are random; then trials are drawn where a density
    of the non-dominated trials (ranked by their share of the hypervolume) is high against a
    density of the others. A trial's objective values are its final metrics of those names
    (see `ktsweep.service.pareto.objective_values`); a trial without all of them (a failed
    one) teaches the study nothing.

    MOTPE rather than NSGA-II, because Keras sweeps are short: NSGA-II breeds only after a
    generation (50 trials by default) and is random search until then, where MOTPE learns
    from the 11th trial. Measured on ZDT1 and DTLZ2 (bench/RESULTS.md, 10 seeds), MOTPE's
    hypervolume beats random's by 12-18 % at 50 trials and 15-24 % at 200, NSGA-II's by 1-4 %
    and 4-8 %. Its cost per suggestion grows with the trials (about 20 ms at 200 here).

    As with `tpe`, each `suggest` rebuilds the study from the trials learned so far, with
    trial `n`'s sampler seeded from the spec's `seed` and `n`, so a restarted controller that
    `restore`s the finished trials suggests exactly what it would have suggested. Trials of
    earlier sweeps (`prior_sweeps`, see `learn_prior_trials`) come first in the study.

    Args:
        spec: The sweep spec (`method: custom`, `scheduler: {engine: optuna}`).
        seed: Random seed; default: the spec's `seed`.
        space: The search space; default: the spec's `parameters`.
        stopping_rule: Unused (a `scheduler` excludes `early_terminate`).
    """

    def __init__(self, spec, seed=None, space=None, stopping_rule=None) -> None:
        super().__init__(spec, seed, space, stopping_rule)
        self.objectives = objectives_of(spec)
        self.directions = [objective.goal for objective in self.objectives]
        self._learned_values: dict[int, tuple[dict[str, Any], list[float]]] = {}
        self._prior_values: list[tuple[dict[str, Any], list[float]]] = []

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def learn_prior_trials(self, trials: list[PriorTrial]) -> None:
        if not self.multi_objective:
            super().learn_prior_trials(trials)
            return
        if self._suggested or self.finished:
            raise RuntimeError(
                "tell a search method its prior trials before its first suggestion (and "
                "before `restore`)."
            )
        self._prior_values = [(t.hyperparameters, list(t.values)) for t in trials]

    def make_sampler(self, number: int) -> optuna.samplers.BaseSampler:
        if self.multi_objective or not gp_sampler_available():
            return optuna.samplers.TPESampler(seed=self._seed(number))
        return super().make_sampler(number)

    def study_for(self, number: int, trials: list[TrialRecord]) -> optuna.Study:
        if not self.multi_objective:
            return super().study_for(number, trials)
        study = optuna.create_study(directions=self.directions, sampler=self.make_sampler(number))
        learned = [
            *self._prior_values,
            *(self._learned_values[n] for n in sorted(self._learned_values)),
        ]
        study.add_trials([self._frozen_trial(config, values) for config, values in learned])
        return study

    def tell(self, trial: TrialRecord, value: float | None) -> None:
        if not self.multi_objective:
            super().tell(trial, value)
            return
        if trial.state not in ("completed", "stopped"):
            return
        values = objective_values(trial.metrics, self.objectives, trial.history)
        if values is not None:
            self._learned_values[trial.number] = (trial.hyperparameters, values)
