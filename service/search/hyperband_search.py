"""Hyperband: Keras Tuner's oracle, with epoch budgets per bracket and continued trials."""

from __future__ import annotations

from typing import Any

from ktsweep.service.compat import keras_tuner as kt_compat
from ktsweep.service.search.base import Suggestion, TrialRecord
from ktsweep.service.search.keras_tuner_oracle import KerasTunerOracleSearch

DEFAULT_FACTOR = 3


class HyperbandSearch(KerasTunerOracleSearch):
    """Trains many configurations briefly and continues the best ones with larger budgets.

    Keras Tuner's `HyperbandOracle` with `max_epochs` = the spec's `trial.fit.epochs` and
    `factor` = the spec's `hyperband.factor` (default 3). Each bracket starts random
    configurations with a small epoch budget; each round continues the best `1/factor` of the
    previous round up to `factor` times the epochs. A continuation is a new trial whose
    `Suggestion` names its `parent`, `initial_epoch` (the epochs already trained) and `epochs`;
    the worker loads the parent's checkpoint and trains on, rather than from scratch. `suggest`
    returns None with `is_waiting` True while a round waits for its trials to end.

    `restore` rebuilds the brackets from the trials: a trial with a parent is the continuation
    of its parent in the parent's bracket, one without opens (or fills) a first round, as the
    oracle placed them.
    """

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

    @property
    def factor(self) -> int:
        """Each round keeps `1/factor` of the trials and trains them `factor` times longer."""
        options = self.spec.hyperband
        return options.factor if options is not None else DEFAULT_FACTOR

    def make_suggestion(self, values: dict[str, Any]) -> Suggestion:
        parent_id = values.get("tuner/trial_id")
        parent = self._numbers.get(parent_id) if parent_id is not None else None
        # A continuation trains on with exactly its parent's configuration.
        hyperparameters = self._configs.get(parent) if parent is not None else None
        return Suggestion(
            hyperparameters=hyperparameters or self.config_from_values(values),
            epochs=int(values["tuner/epochs"]),
            initial_epoch=int(values["tuner/initial_epoch"]) or None,
            parent=parent,
        )

    def restored_values(self, record: TrialRecord) -> dict[str, Any]:
        oracle = self.oracle
        trial_id = self.next_trial_id()
        # As `populate_space` starts: brackets whose last round is full take no more trials.
        kt_compat.remove_completed_brackets(oracle)
        parent_id = self._trial_ids.get(record.parent) if record.parent is not None else None
        if parent_id is not None:
            continuation = self._continuation(parent_id, trial_id)
            if continuation is not None:
                return continuation
        bracket = next(
            (
                bracket
                for bracket in kt_compat.brackets(oracle)
                if len(bracket["rounds"][0]) < kt_compat.round_size(oracle, bracket["bracket_num"])
            ),
            None,
        )
        if bracket is None:
            bracket = kt_compat.start_new_bracket(oracle)
        values = super().restored_values(record)
        values.update(
            {
                "tuner/epochs": kt_compat.round_epochs(oracle, bracket["bracket_num"]),
                "tuner/initial_epoch": 0,
                "tuner/bracket": kt_compat.current_bracket(oracle),
                "tuner/round": 0,
            }
        )
        bracket["rounds"][0].append({"past_id": None, "id": trial_id})
        return values

    def _continuation(self, parent_id: str, trial_id: str) -> dict[str, Any] | None:
        """The values of trial `trial_id`, continuing `parent_id` into its bracket's next round
        (None when no open bracket holds the parent)."""
        oracle = self.oracle
        for bracket in kt_compat.brackets(oracle):
            rounds = bracket["rounds"]
            for round_num, round_info in enumerate(rounds[:-1]):
                if not any(info["id"] == parent_id for info in round_info):
                    continue
                bracket_num = bracket["bracket_num"]
                values = oracle.trials[parent_id].hyperparameters.values.copy()
                trained = kt_compat.round_epochs(oracle, bracket_num, round_num)
                epochs = kt_compat.round_epochs(oracle, bracket_num, round_num + 1)
                values.update(
                    {
                        "tuner/trial_id": parent_id,
                        "tuner/epochs": epochs,
                        "tuner/initial_epoch": trained,
                        "tuner/bracket": kt_compat.current_bracket(oracle),
                        "tuner/round": round_num + 1,
                    }
                )
                rounds[round_num + 1].append({"past_id": parent_id, "id": trial_id})
                return values
        return None
