"""`method: custom` with `scheduler: {engine: ax}`: Meta's Ax platform, through its public
`ax.Client` (ax-platform 1.x), needing the `ax` extra (`pip install 'ktsweep[ax]'`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ktsweep.lifecycle import ACTIVE_STATES, SUCCEEDED_STATES
from ktsweep.service.pareto import objective_values
from ktsweep.service.search.base import SearchMethod, TrialRecord, finished_in_order
from ktsweep.service.search.user_code_search import config_from_coordinates
from ktsweep.service.spec import objectives_of

if TYPE_CHECKING:
    from ktsweep.service.search.warm_start import PriorTrial


class AxSearch(SearchMethod):
    """Suggests trials from an Ax experiment whose objectives are the sweep's goals.

    Ax's default generation strategy: quasi-random (Sobol) trials first, then Bayesian
    optimisation with BoTorch; with several objectives (`metrics`), BoTorch's multi-objective
    acquisition, which seeks the Pareto front. The space is the spec's `parameters` as
    `engine: optuna` searches them: a categorical dimension is an unordered choice of its value
    index, every other one a float in [0, 1], its quantile (so every W&B distribution, bounded
    or not, is searchable); Ax's parameters and metrics get plain names of their own
    (`p0`, `objective_0`), as Ax parses names with "/" in them as arithmetic.

    A completed or stopped trial is completed in Ax with its objective values (see
    `ktsweep.service.pareto.objective_values`); a failed or cancelled one, or one without every
    objective's value, is marked failed. `restore` attaches the stored trials to a new
    experiment (`Client.attach_trial`) and completes or fails the finished ones, so the same
    sweep goes on after a controller restart; a warm start (`learn_prior_trials`) attaches and
    completes earlier sweeps' trials first.

    Ax runs in the scheduler's process: it is a library the operator installed, not user code.

    Args:
        spec: The sweep spec (`method: custom`, `scheduler: {engine: ax}`).
        seed: Ax's random seed; default: the spec's `seed`.
        space: The search space; default: the spec's `parameters`.
        stopping_rule: Unused (a `scheduler` excludes `early_terminate`).
    """

    def __init__(self, spec, seed=None, space=None, stopping_rule=None):
        super().__init__(spec, seed, space, stopping_rule)
        self.objectives = objectives_of(spec)
        self._dimensions = [d for d in self.space.dimensions if not d.is_constant]
        self._ax_names = {d.name: f"p{i}" for i, d in enumerate(self._dimensions)}
        self._client: Any = None
        self._index: dict[int, int] = {}  # the sweep's trial number -> Ax's trial index

    @property
    def client(self) -> Any:
        """The Ax client, made on first use (importing Ax takes seconds)."""
        if self._client is None:
            self._client = self._new_client()
        return self._client

    def _new_client(self) -> Any:
        from ax import ChoiceParameterConfig, Client, RangeParameterConfig

        # Ax gives each of its loggers its own level (INFO): a line per trial is too many.
        for name in list(logging.root.manager.loggerDict):
            if name.split(".")[0] in ("ax", "botorch", "gpytorch", "linear_operator"):
                logging.getLogger(name).setLevel(logging.WARNING)
        client = Client(random_seed=self.seed)
        parameters = [
            ChoiceParameterConfig(
                name=self._ax_names[d.name],
                values=list(range(len(d.choices))),
                parameter_type="int",
                is_ordered=False,
            )
            if d.choices is not None
            else RangeParameterConfig(
                name=self._ax_names[d.name], bounds=(0.0, 1.0), parameter_type="float"
            )
            for d in self._dimensions
        ]
        client.configure_experiment(parameters=parameters, name="ktsweep")
        objectives = [
            ("" if objective.goal == "maximize" else "-") + f"objective_{i}"
            for i, objective in enumerate(self.objectives)
        ]
        client.configure_optimization(objective=", ".join(objectives))
        return client

    def suggest(self, number: int, trials: list[TrialRecord]) -> dict[str, Any] | None:
        if not self._dimensions:  # nothing to search: every trial is the same
            return config_from_coordinates(self.space, {})
        from ax.exceptions.core import DataRequiredError
        from ax.exceptions.generation_strategy import MaxParallelismReachedException

        try:
            made = self.client.get_next_trials(max_trials=1)
        except (DataRequiredError, MaxParallelismReachedException):
            if not self.is_waiting(trials):
                raise
            made = {}
        if not made:  # Ax waits for data on the trials it has (see `is_waiting`)
            return None
        ((index, parameters),) = made.items()
        self._index[number] = index
        return config_from_coordinates(self.space, self._coordinates(parameters))

    def is_waiting(self, trials: list[TrialRecord]) -> bool:
        return any(trial.state in ACTIVE_STATES for trial in trials)

    def tell(self, trial: TrialRecord, value: float | None) -> None:
        index = self._index.get(trial.number)
        if index is None:
            return
        values = self.values_of(trial)
        if values is None:
            self.client.mark_trial_failed(index)
        else:
            self.client.complete_trial(
                index, raw_data={f"objective_{i}": v for i, v in enumerate(values)}
            )

    def restore(self, trials: list[TrialRecord]) -> None:
        """Attach every stored trial to the experiment (running ones stay running), then
        complete or fail the finished ones in the order they ended."""
        if self._dimensions:
            for trial in sorted(trials, key=lambda t: t.number):
                parameters = self._parameters(trial.hyperparameters)
                self._index[trial.number] = self.client.attach_trial(parameters)
        for trial in finished_in_order(trials):
            self.observe(trial)

    def learn_prior_trials(self, trials: list[PriorTrial]) -> None:
        """Learn completed trials of earlier sweeps (`prior_sweeps`): each is attached to the
        experiment and completed with its values, before the sweep's own trials.

        Raises:
            RuntimeError: the method has already suggested or learned a trial.
        """
        if self._index or self.finished:
            raise RuntimeError(
                "tell a search method its prior trials before its first suggestion (and "
                "before `restore`)."
            )
        if not self._dimensions:  # nothing to search: nothing to learn
            return
        for trial in trials:
            index = self.client.attach_trial(self._parameters(trial.hyperparameters))
            self.client.complete_trial(
                index, raw_data={f"objective_{i}": v for i, v in enumerate(trial.values)}
            )

    def values_of(self, trial: TrialRecord) -> list[float] | None:
        """The objective values to complete the trial with (None: it failed)."""
        if trial.state not in SUCCEEDED_STATES:
            return None
        if len(self.objectives) == 1:  # its objective, as the other methods learn it
            own = self._own_value(trial)
            if own is not None:
                return [own]
        return objective_values(trial.metrics, self.objectives, trial.history)

    def _parameters(self, hyperparameters: dict[str, Any]) -> dict[str, Any]:
        """A configuration as Ax's parameters (a dimension it lacks: at its middle)."""
        coordinates = self.space.coordinates(hyperparameters)
        return {
            self._ax_names[d.name]: coordinates.get(
                d.name, len(d.choices) // 2 if d.choices is not None else 0.5
            )
            for d in self._dimensions
        }

    def _coordinates(self, parameters: dict[str, Any]) -> dict[str, Any]:
        return {d.name: parameters[self._ax_names[d.name]] for d in self._dimensions}
