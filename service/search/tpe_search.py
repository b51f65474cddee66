"""Tree-structured Parzen estimator: optuna's `TPESampler`, driven by ask-and-tell."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import optuna

from ktsweep.service.search.base import SearchMethod, TrialRecord
from ktsweep.service.search.space import nest

if TYPE_CHECKING:
    from ktsweep.service.search.warm_start import PriorTrial


class TpeSearch(SearchMethod):
    """Suggests configurations likelier under a density of good trials than of bad ones.

    Optuna's `TPESampler`: each `suggest` asks an in-memory study holding every trial learned
    so far (finished trials with their value; failed ones with the `metric.impute` value, or
    left out when there is none yet; running ones with the `metric.impute_while_running` value
    when the spec asks for it), then calls one `suggest_*` per active dimension (categorical
    dimensions by value index, every other one by its quantile in [0, 1], mapped through its own
    distribution). The first 10 trials are random (optuna's default).

    Trial `n` of a seeded sweep is drawn with its own seed, derived from the spec's `seed` and
    `n`, and the study is rebuilt from the trials' configurations, so a restarted controller
    that `restore`s the finished trials suggests exactly what it would have suggested.

    Trials of earlier sweeps (`prior_sweeps`, see `learn_prior_trials`) come first in the
    study, as finished trials; they count toward the 10 random ones.
    """

    def __init__(self, spec, seed=None, space=None, stopping_rule=None):
        super().__init__(spec, seed, space, stopping_rule)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.direction = "maximize" if self.maximize else "minimize"
        self._learned: dict[int, optuna.trial.FrozenTrial] = {}
        self._prior: list[optuna.trial.FrozenTrial] = []
        self._suggested = False

    def learn_prior_trials(self, trials: list[PriorTrial]) -> None:
        """Learn completed trials of earlier sweeps, before the first suggestion (a warm start,
        see `ktsweep.service.search.warm_start`).

        They join every study this method builds, ahead of the sweep's own trials, and touch
        nothing else: not `finished`, not the stopping rule, not the values imputed for
        failed trials.

        Raises:
            RuntimeError: the method has already suggested or learned a trial.
        """
        if self._suggested or self.finished:
            raise RuntimeError(
                "tell a search method its prior trials before its first suggestion (and "
                "before `restore`)."
            )
        self._prior = [self._frozen_trial(t.hyperparameters, t.values[0]) for t in trials]

    def suggest(self, number: int, trials: list[TrialRecord]) -> dict[str, Any] | None:
        self._suggested = True
        trial = self.study_for(number, trials).ask()
        flat: dict[str, Any] = {}
        for dimension in self.space.dimensions:
            if not dimension.is_active(flat):
                continue
            if dimension.is_constant:
                flat[dimension.name] = dimension.from_unit(0.0)
            elif dimension.choices is not None:
                choices = dimension.choices
                index = trial.suggest_categorical(dimension.name, list(range(len(choices))))
                flat[dimension.name] = choices[index]
            else:
                flat[dimension.name] = dimension.from_unit(
                    trial.suggest_float(dimension.name, 0.0, 1.0)
                )
        return nest(flat)

    def study_for(self, number: int, trials: list[TrialRecord]) -> optuna.Study:
        """The study that suggests trial `number`: every trial learned so far, plus the running
        trials among `trials` that count while they run (`metric.impute_while_running`)."""
        learned = dict(self._learned)
        for record in trials:
            if record.number in learned:
                continue
            running_value = self.value_while_running(record)
            if running_value is not None:
                learned[record.number] = self._frozen_trial(record.hyperparameters, running_value)
        study = optuna.create_study(direction=self.direction, sampler=self.make_sampler(number))
        # Prior trials first, then the sweep's in trial-number order, as an uninterrupted
        # study would hold them.
        study.add_trials([*self._prior, *(learned[n] for n in sorted(learned))])
        return study

    def make_sampler(self, number: int) -> optuna.samplers.BaseSampler:
        """The sampler that suggests trial `number` (seeded from the spec's seed and `number`)."""
        return optuna.samplers.TPESampler(seed=self._seed(number))

    def tell(self, trial: TrialRecord, value: float | None) -> None:
        if value is not None:  # a failed trial with nothing to impute teaches TPE nothing
            self._learned[trial.number] = self._frozen_trial(trial.hyperparameters, value)

    def _seed(self, number: int) -> int | None:
        if self.seed is None:
            return None
        return random.Random(f"{self.seed}:{number}").getrandbits(32)

    def _frozen_trial(
        self,
        config: dict[str, Any],
        value: float | list[float],
        system_attrs: dict[str, Any] | None = None,
    ) -> optuna.trial.FrozenTrial:
        """A finished trial of `config` that scored `value` (a list: one value per objective)."""
        coordinates = self.space.coordinates(config)
        distributions: dict[str, optuna.distributions.BaseDistribution] = {}
        for dimension in self.space.dimensions:
            if dimension.name not in coordinates:
                continue
            if dimension.choices is not None:
                distributions[dimension.name] = optuna.distributions.CategoricalDistribution(
                    list(range(len(dimension.choices)))
                )
            else:
                distributions[dimension.name] = optuna.distributions.FloatDistribution(0.0, 1.0)
        return optuna.trial.create_trial(
            params=coordinates,
            distributions=distributions,
            values=list(value) if isinstance(value, list) else [value],
            system_attrs=system_attrs,
        )
