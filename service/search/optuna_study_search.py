"""`method: custom` with `scheduler: {engine: optuna}`: an Optuna study, driven by ask-and-tell."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import optuna

from ktsweep.service.compat.optuna import nsga2_generation_key
from ktsweep.service.pareto import objective_values
from ktsweep.service.search.base import TrialRecord
from ktsweep.service.search.tpe_search import TpeSearch
from ktsweep.service.spec import objectives_of

if TYPE_CHECKING:
    from ktsweep.service.search.warm_start import PriorTrial

# Optuna's default population of NSGA-II: the trials of one generation.
DEFAULT_POPULATION_SIZE = 50


class OptunaStudySearch(TpeSearch):
    """Suggests trials from an Optuna study whose directions are the sweep's goals.

    With one objective (`metric`) this is method `tpe`. With several (`metrics`), the study
    has one direction per objective and Optuna's `NSGAIISampler`: trials are bred from the
    non-dominated, most spread-out trials of the previous generation, and the first
    generation is random. A trial's objective values are its final metrics of those names
    (see `ktsweep.service.pareto.objective_values`); a trial without all of them (a failed
    one) teaches the study nothing, as Optuna's NSGA-II ignores failed trials.

    NSGA-II rather than Optuna's multi-objective TPE: its cost per suggestion stays flat as a
    sweep grows (MOTPE's grows with the trials and the objectives), a generation's trials run
    in parallel, and it is the established baseline for Pareto fronts. It needs about a
    generation of trials (`population_size`) before it breeds: with fewer trials it is
    random search.

    As with `tpe`, each `suggest` rebuilds the study from the trials learned so far, with
    trial `n`'s sampler seeded from the spec's `seed` and `n`; learned trials form the
    generations in trial-number order, `population_size` each. So a restarted controller that
    `restore`s the finished trials suggests exactly what it would have suggested.

    Trials of earlier sweeps (`prior_sweeps`, see `learn_prior_trials`) come first: with
    several objectives they are the first generations, so with a population's worth of them
    NSGA-II breeds from the first suggestion.

    Args:
        spec: The sweep spec (`method: custom`, `scheduler: {engine: optuna}`).
        seed: Random seed; default: the spec's `seed`.
        space: The search space; default: the spec's `parameters`.
        stopping_rule: Unused (a `scheduler` excludes `early_terminate`).
        population_size: NSGA-II's trials per generation. Default 50 (Optuna's default).
    """

    def __init__(
        self, spec, seed=None, space=None, stopping_rule=None, population_size=None
    ) -> None:
        super().__init__(spec, seed, space, stopping_rule)
        self.objectives = objectives_of(spec)
        self.directions = [objective.goal for objective in self.objectives]
        self.population_size = population_size or DEFAULT_POPULATION_SIZE
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

    def study_for(self, number: int, trials: list[TrialRecord]) -> optuna.Study:
        if not self.multi_objective:
            return super().study_for(number, trials)
        sampler = optuna.samplers.NSGAIISampler(
            population_size=self.population_size, seed=self._seed(number)
        )
        study = optuna.create_study(directions=self.directions, sampler=sampler)
        generation_key = nsga2_generation_key()
        learned = [
            self._frozen_trial(config, values, {generation_key: index // self.population_size})
            for index, (config, values) in enumerate(
                [
                    *self._prior_values,
                    *(self._learned_values[n] for n in sorted(self._learned_values)),
                ]
            )
        ]
        study.add_trials(learned)
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
