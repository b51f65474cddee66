"""Tree-structured Parzen estimator: optuna's `TPESampler`, driven by ask-and-tell."""

from __future__ import annotations

from typing import Any

import optuna

from service.search.base import SearchMethod, TrialRecord
from service.search.space import nest


class TpeSearch(SearchMethod):
    """Suggests configurations likelier under a density of good trials than of bad ones.

    An in-memory optuna study with `TPESampler(seed=spec.seed)`: each `suggest` is
    `study.ask()` plus one `suggest_*` call per active dimension (categorical dimensions by value
    index, every other one by its quantile in [0, 1], mapped through its own distribution); each
    finished trial is `study.tell(...)` with its value (failed trials: the `metric.impute`
    value, or failed when there is none yet). The first 10 trials are random (optuna's default).
    """

    def __init__(self, spec, seed=None, space=None, stopping_rule=None):
        super().__init__(spec, seed, space, stopping_rule)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.study = optuna.create_study(
            direction="maximize" if self.maximize else "minimize",
            sampler=optuna.samplers.TPESampler(seed=self.seed),
        )
        self._trials: dict[int, optuna.Trial] = {}

    def suggest(self, number: int, trials: list[TrialRecord]) -> dict[str, Any] | None:
        trial = self.study.ask()
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
        self._trials[number] = trial
        return nest(flat)

    def tell(self, trial: TrialRecord, value: float | None) -> None:
        optuna_trial = self._trials.pop(trial.number, None)
        if optuna_trial is None:
            return
        if value is None:
            self.study.tell(optuna_trial, state=optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(optuna_trial, value)
