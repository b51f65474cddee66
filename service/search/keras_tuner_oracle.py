"""Drives a Keras Tuner oracle in ask-and-tell fashion (the base of bayes and hyperband).

The oracle searches a Keras Tuner space: hyperparameters `build(hp)` declares keep their own
`hp.Int/Float/Choice/...` objects (and conditions); a W&B parameter becomes `hp.Choice` over the
indices of its values when categorical, otherwise `hp.Float` over its quantile in [0, 1], mapped
back through the W&B distribution (so normal, beta, ... are searchable too).

After a controller restart, `restore` hands the oracle the sweep's trials as if it had created
them itself (see `KerasTunerOracleSearch.restore`). A warm start hands it earlier sweeps' trials
first, as completed trials of its own (`learn_prior_trials`).
"""

from __future__ import annotations

import tempfile
from typing import TYPE_CHECKING, Any

from threadpoolctl import threadpool_limits

from ktsweep.service.compat import keras_tuner as kt_compat
from ktsweep.service.search.base import SearchMethod, Suggestion, TrialRecord, metric_history
from ktsweep.service.search.space import KerasTunerDimension, flatten, nest

if TYPE_CHECKING:
    from ktsweep.service.search.warm_start import PriorTrial


class KerasTunerOracleSearch(SearchMethod):
    """A search method that asks a Keras Tuner oracle (`make_oracle`) what to try next."""

    def __init__(self, spec, seed=None, space=None, stopping_rule=None):
        super().__init__(spec, seed, space, stopping_rule)
        import keras_tuner as kt

        self._kt = kt
        self._directory = tempfile.TemporaryDirectory(prefix="ktsweep-oracle-")
        self.oracle = self.make_oracle(
            objective=kt.Objective("score", "max" if self.maximize else "min"),
            hyperparameters=self._oracle_space(),
            # Keras Tuner draws a random seed for 0 or None; keep 0 reproducible.
            seed=None if self.seed is None else int(self.seed) % (2**31 - 1) + 1,
        )
        kt_compat.set_project_dir(self.oracle, self._directory.name, "oracle")
        self.oracle.verbose = 0
        self._trial_ids: dict[int, str] = {}
        self._numbers: dict[str, int] = {}
        self._configs: dict[int, dict[str, Any]] = {}
        self._waiting = False

    def make_oracle(self, objective: Any, hyperparameters: Any, seed: int | None) -> Any:
        """The Keras Tuner oracle to drive."""
        raise NotImplementedError

    def suggest(self, number: int, trials: list[TrialRecord]) -> dict[str, Any] | Any | None:
        # The oracle's matrices are tiny: threaded BLAS only adds contention (10x slower here).
        with threadpool_limits(limits=1):
            trial = self.oracle.create_trial(f"ktsweep-{number}")
        self._waiting = trial.status == "IDLE"
        if trial.status != "RUNNING":
            return None
        self._trial_ids[number] = trial.trial_id
        self._numbers[trial.trial_id] = number
        suggestion = self.make_suggestion(trial.hyperparameters.values)
        config = suggestion.hyperparameters if isinstance(suggestion, Suggestion) else suggestion
        self._configs[number] = config
        return suggestion

    def make_suggestion(self, values: dict[str, Any]) -> dict[str, Any] | Any:
        """What `suggest` returns for the oracle's `values`."""
        return self.config_from_values(values)

    def is_waiting(self, trials: list[TrialRecord]) -> bool:
        return self._waiting

    def tell(self, trial: TrialRecord, value: float | None) -> None:
        trial_id = self._trial_ids.get(trial.number)
        if trial_id is None or trial_id not in self.oracle.trials:
            return
        points = metric_history(trial, self.metric) if self.metric else []
        if trial.state in ("completed", "stopped") and points:
            # Keras Tuner scores a trial by its best step, as its own tuners do.
            for step, point in points:
                self.oracle.update_trial(trial_id, {"score": point}, step=step)
        elif value is not None:
            self.oracle.update_trial(trial_id, {"score": value})
        kt_trial = self.oracle.trials[trial_id]
        kt_trial.status = "COMPLETED" if (points or value is not None) else "FAILED"
        self.oracle.end_trial(kt_trial)

    def restore(self, trials: list[TrialRecord]) -> None:
        """Hand the oracle the sweep's trials as if it had created them, then observe the
        finished ones in the order they ended.

        Each trial, in number order, becomes one of the oracle's trials with the values it was
        created with: a seeded oracle draws its random trials again, so these come back exactly
        and its random state moves on as it did; any other trial's values are worked back from
        its configuration (`values_from_config`). Running trials stay running (the oracle treats
        them as its ongoing trials) until they are observed.
        """
        for record in sorted(trials, key=lambda trial: trial.number):
            if record.number not in self._trial_ids:
                self._register(record, self.restored_values(record))
        super().restore(trials)

    def restored_values(self, record: TrialRecord) -> dict[str, Any]:
        """The oracle's values for a trial it is told about in `restore` (called in number
        order); by default its own next random draw when that gives the trial's configuration,
        else the values worked back from the configuration."""
        return self.replay_random_values(record.hyperparameters) or self.values_from_config(
            record.hyperparameters
        )

    def replay_random_values(self, config: dict[str, Any]) -> dict[str, Any] | None:
        """The oracle's next random draw, when it is `config` (the oracle then stands where it
        stood after drawing it); None, and the oracle's random state untouched, otherwise."""
        seed_state = kt_compat.seed_state(self.oracle)
        values = kt_compat.random_values(self.oracle)
        if values is not None and self.config_from_values(values) == config:
            return values
        kt_compat.set_seed_state(self.oracle, seed_state)
        return None

    def values_from_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """The oracle's values for a configuration: the inverse of `config_from_values`."""
        coordinates = self.space.coordinates(config)
        flat = flatten(config)
        values: dict[str, Any] = {}
        for dimension in self.space.dimensions:
            if isinstance(dimension, KerasTunerDimension):
                # Keras Tuner keeps its own values, fixed ones included.
                placed = dimension.name in coordinates or dimension.is_constant
                if placed and dimension.name in flat:
                    values[dimension.name] = flat[dimension.name]
            elif dimension.name in coordinates:
                values[dimension.name] = coordinates[dimension.name]
        return values

    def next_trial_id(self) -> str:
        """The id the oracle gives the next trial it creates (its count of trials, padded)."""
        return f"{{:0{len(str(self.oracle.max_trials))}d}}".format(len(self.oracle.trials))

    def _register(self, record: TrialRecord, values: dict[str, Any]) -> None:
        """Make `record` one of the oracle's trials, running, as `create_trial` would have."""
        trial = self._add_running_trial(values, f"ktsweep-{record.number}")
        self._trial_ids[record.number] = trial.trial_id
        self._numbers[trial.trial_id] = record.number
        self._configs[record.number] = record.hyperparameters

    def _add_running_trial(self, values: dict[str, Any], tuner_id: str) -> Any:
        """A new running trial of the oracle with `values`, as `create_trial` would make it."""
        oracle = self.oracle
        trial_id = self.next_trial_id()
        hyperparameters = oracle.hyperparameters.copy()
        hyperparameters.values = values
        trial = self._kt.engine.trial.Trial(
            hyperparameters=hyperparameters, trial_id=trial_id, status="RUNNING"
        )
        kt_compat.record_values(oracle, trial)
        oracle.tuner_ids.add(tuner_id)
        oracle.ongoing_trials[tuner_id] = trial
        oracle.trials[trial_id] = trial
        oracle.start_order.append(trial_id)
        return trial

    def learn_prior_trials(self, trials: list[PriorTrial]) -> None:
        """Learn completed trials of earlier sweeps, before the first suggestion (a warm start,
        see `ktsweep.service.search.warm_start`).

        Each becomes a completed trial of the oracle, ahead of the sweep's own, scored with
        its value of the objective; none is a trial of the sweep (no number, not in
        `finished`), so they teach the oracle and touch nothing else. Prior trials count
        toward the oracle's random start.

        Raises:
            RuntimeError: the method has already suggested or learned a trial.
        """
        if self._trial_ids or self.finished:
            raise RuntimeError(
                "tell a search method its prior trials before its first suggestion (and "
                "before `restore`)."
            )
        for index, prior in enumerate(trials):
            trial = self._add_running_trial(
                self.values_from_config(prior.hyperparameters), f"ktsweep-prior-{index}"
            )
            self.oracle.update_trial(trial.trial_id, {"score": prior.values[0]})
            trial.status = "COMPLETED"
            self.oracle.end_trial(trial)

    def _oracle_space(self) -> Any:
        kt = self._kt
        space = kt.HyperParameters()
        for dimension in self.space.dimensions:
            if isinstance(dimension, KerasTunerDimension):
                space.merge([dimension.hp])
            elif dimension.is_constant:
                continue
            elif dimension.choices is not None:
                space.Choice(dimension.name, list(range(len(dimension.choices))), ordered=False)
            else:
                space.Float(dimension.name, 0.0, 1.0)
        return space

    def config_from_values(self, values: dict[str, Any]) -> dict[str, Any]:
        """The configuration for the oracle's (flat) `values`."""
        flat: dict[str, Any] = {}
        for dimension in self.space.dimensions:
            if not dimension.is_active(flat):
                continue
            if isinstance(dimension, KerasTunerDimension):
                if dimension.name in values:
                    flat[dimension.name] = values[dimension.name]
                elif dimension.is_constant:
                    flat[dimension.name] = dimension.from_unit(0.0)
            elif dimension.is_constant:
                flat[dimension.name] = dimension.from_unit(0.0)
            elif dimension.choices is not None:
                flat[dimension.name] = dimension.choices[int(values[dimension.name])]
            else:
                flat[dimension.name] = dimension.from_unit(float(values[dimension.name]))
        return nest(flat)
