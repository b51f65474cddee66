"""Hyperband: Keras Tuner's oracle, with epoch budgets per bracket and continued trials."""

from __future__ import annotations

from typing import Any

from service.search.base import Suggestion
from service.search.keras_tuner_oracle import KerasTunerOracleSearch


class HyperbandSearch(KerasTunerOracleSearch):
    """Trains many configurations briefly and continues the best ones with larger budgets.

    Keras Tuner's `HyperbandOracle` with `max_epochs` = the spec's `trial.fit.epochs` and
    `factor` 3. Each bracket starts random configurations with a small epoch budget; each round
    continues the best `1/factor` of the previous round up to `factor` times the epochs. A
    continuation is a new trial whose `Suggestion` names its `parent`, `initial_epoch` (the
    epochs already trained) and `epochs`; the worker loads the parent's checkpoint and trains on,
    rather than from scratch. `suggest` returns None with `is_waiting` True while a round waits
    for its trials to end.
    """

    factor = 3

    def make_oracle(self, objective: Any, hyperparameters: Any, seed: int | None) -> Any:
        max_epochs = self.spec.trial.fit.epochs if self.spec.trial else 10
        return self._kt.oracles.HyperbandOracle(
            objective=objective,
            max_epochs=max_epochs,
            factor=self.factor,
            hyperband_iterations=1,
            hyperparameters=hyperparameters,
            seed=seed,
            max_consecutive_failed_trials=10**9,
        )

    def make_suggestion(self, values: dict[str, Any]) -> Suggestion:
        parent_id = values.get("tuner/trial_id")
        return Suggestion(
            hyperparameters=self.config_from_values(values),
            epochs=int(values["tuner/epochs"]),
            initial_epoch=int(values["tuner/initial_epoch"]) or None,
            parent=self._numbers.get(parent_id) if parent_id is not None else None,
        )
