"""The interface every search method implements: suggest, observe, should-stop, restore."""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from ktsweep.lifecycle import ACTIVE_STATES, FINISHED_STATES, SUCCEEDED_STATES
from ktsweep.service.search.space import SearchSpace
from ktsweep.service.spec import SweepSpec

if TYPE_CHECKING:
    from ktsweep.service.search.stopping import StoppingRule


@dataclass
class TrialRecord:
    """What a search method may know of a trial: its number, config, state and history.

    `history` holds one `{"step": n, "metrics": {...}}` per report, oldest first; it is filled in
    for `should_stop`, `observe` and `restore`, and may be empty in `suggest`. `objective` is the
    latest value of the metric (of a running trial too). `finished_at` orders finished trials
    in `restore`. `metrics` are the trial's final metrics (its result's, or its latest report's
    while it runs), where several objectives are read from.
    """

    number: int
    hyperparameters: dict[str, Any]
    state: str
    objective: float | None = None
    epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    parent: int | None = None
    finished_at: datetime | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class Suggestion:
    """A trial to run, when a method needs more than a configuration.

    Attributes:
        hyperparameters: The trial's configuration.
        epochs: Train up to this epoch (overrides the spec's `fit.epochs`), or None.
        initial_epoch: Start counting epochs here (a continuation), or None.
        parent: Number of the trial whose last checkpoint this one continues from, or None.
    """

    hyperparameters: dict[str, Any]
    epochs: int | None = None
    initial_epoch: int | None = None
    parent: int | None = None


class SearchMethod(abc.ABC):
    """Decides what to try next. A search method never trains and never touches storage.

    Args:
        spec: The sweep spec.
        seed: Random seed; default: the spec's `seed` (None: not reproducible).
        space: The search space; default: the spec's `parameters`.
        stopping_rule: The early-termination rule consulted by `should_stop`, or None.

    Attributes:
        suggests_ahead: True when a suggestion never depends on how earlier trials did (random,
            grid): the scheduler may then suggest a slot's next trial while its current one
            runs, so it starts the moment that one ends.
    """

    suggests_ahead: ClassVar[bool] = False

    def __init__(
        self,
        spec: SweepSpec,
        seed: int | None = None,
        space: SearchSpace | None = None,
        stopping_rule: StoppingRule | None = None,
    ):
        self.spec = spec
        self.seed = spec.seed if seed is None else seed
        self.space = space if space is not None else SearchSpace.from_spec(spec)
        self.stopping_rule = stopping_rule
        self.metric = spec.metric.name if spec.metric else None
        self.maximize = bool(spec.metric and spec.metric.goal == "maximize")
        self.finished: dict[int, TrialRecord] = {}

    @abc.abstractmethod
    def suggest(self, number: int, trials: list[TrialRecord]) -> dict[str, Any] | Suggestion | None:
        """The configuration of trial `number` (a dict, or a `Suggestion`), or None when there is
        nothing to run now: the space is exhausted, or (with `is_waiting`) the method waits for
        running trials to end."""

    def is_waiting(self, trials: list[TrialRecord]) -> bool:
        """True when `suggest` returned None only because running trials must end first."""
        return False

    def observe(self, trial: TrialRecord) -> None:
        """Learn from a finished trial ("completed", "stopped", "failed" or "cancelled").

        Called once per trial when it ends (a second call for the same trial is ignored).
        Passes the trial to the stopping rule, then to `tell` with the value the method should
        learn (see `objective_for`).
        """
        if trial.number in self.finished:
            return
        self.finished[trial.number] = trial
        if self.stopping_rule is not None:
            self.stopping_rule.trial_ended(trial)
        self.tell(trial, self.objective_for(trial))

    def restore(self, trials: list[TrialRecord]) -> None:
        """Catch up with trials that ran before this method existed (a controller restart).

        Afterwards the method is in the state it would be in had it suggested and observed
        these trials itself: the next `suggest` proposes what it would have proposed. The
        default observes each finished trial in the order they ended; methods with more state
        (the trials they suggested, running ones included) extend it.

        Args:
            trials: Every trial of the sweep so far, with their histories.
        """
        for trial in finished_in_order(trials):
            self.observe(trial)

    def tell(self, trial: TrialRecord, value: float | None) -> None:  # noqa: B027 - optional
        """Learn that `trial` scored `value` (None: nothing to learn); model-based methods
        override this."""

    def should_stop(self, trial: TrialRecord, trials: list[TrialRecord]) -> bool:
        """Whether a running trial should end early, by the spec's `early_terminate` rule."""
        if self.stopping_rule is None:
            return False
        return self.stopping_rule.should_stop(trial, trials)

    def objective_for(self, trial: TrialRecord) -> float | None:
        """The value to learn from a finished trial, with W&B's `metric.impute` for failures.

        A completed or stopped trial gives its objective (its last value of the metric). A
        failed or cancelled one gives, by `impute`: `worst` (default) or `best` value of any
        finished trial, or its own `latest` reported value (else the worst); None when no trial
        has a value yet.
        """
        if trial.state in SUCCEEDED_STATES:
            return self._own_value(trial)
        return self._imputed(trial, self.spec.metric.impute if self.spec.metric else "worst")

    def value_while_running(self, trial: TrialRecord) -> float | None:
        """The value a running trial counts with while it runs, by W&B's
        `metric.impute_while_running`; None when it does not count.

        As in W&B's sweeps, a running trial counts with its own value so far: `latest`, its
        latest reported value; `best` or `worst`, the best or worst value it has reported (by
        `metric.goal`). While it has reported none, it counts as `impute` gives a failed trial
        (the best or worst value of any finished trial). `false` (the default): running trials
        do not count. Methods that model the objective (bayes, tpe) count it when suggesting;
        its real value replaces it once the trial ends.
        """
        strategy = self.spec.metric.impute_while_running if self.spec.metric else "false"
        if strategy == "false" or trial.state not in ACTIVE_STATES:
            return None
        if trial.number in self.finished:
            return None
        values = [value for _, value in metric_history(trial, self.metric)] if self.metric else []
        if values and strategy in ("best", "worst"):
            higher = self.maximize == (strategy == "best")
            return max(values) if higher else min(values)
        if values:
            return _latest(trial, self.metric)
        return self._imputed(trial, strategy)

    def _own_value(self, trial: TrialRecord) -> float | None:
        return trial.objective if _finite(trial.objective) else _latest(trial, self.metric)

    def _imputed(self, trial: TrialRecord, impute: str) -> float | None:
        own = self._own_value(trial)
        if impute == "latest" and own is not None:
            return own
        seen = [
            value
            for record in self.finished.values()
            if record.state in SUCCEEDED_STATES
            for value in [record.objective if _finite(record.objective) else None]
            if value is not None
        ]
        if not seen:
            return None
        best = max(seen) if self.maximize else min(seen)
        worst = min(seen) if self.maximize else max(seen)
        return best if impute == "best" else worst


def finished_in_order(trials: list[TrialRecord]) -> list[TrialRecord]:
    """The finished trials among `trials`, in the order they ended (by number where unknown)."""
    finished = [trial for trial in trials if trial.state in FINISHED_STATES]
    with_time = sorted(
        (trial for trial in finished if trial.finished_at is not None),
        key=lambda trial: (trial.finished_at, trial.number),
    )
    without_time = sorted(
        (trial for trial in finished if trial.finished_at is None), key=lambda t: t.number
    )
    return [*with_time, *without_time]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _latest(trial: TrialRecord, metric: str | None) -> float | None:
    for entry in reversed(trial.history):
        value = entry.get("metrics", {}).get(metric) if metric else None
        if _finite(value):
            return float(value)
    return None


def metric_history(trial: TrialRecord, metric: str) -> list[tuple[int, float]]:
    """`(step, value)` for each report of `trial` with a finite value of `metric`, by step."""
    points = []
    for entry in trial.history:
        value = entry.get("metrics", {}).get(metric)
        if _finite(value):
            points.append((int(entry["step"]), float(value)))
    return sorted(points)
