"""The interface every search method implements: suggest, observe, should-stop."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

from service.spec import SweepSpec


@dataclass
class TrialRecord:
    """What a search method may know of a trial: its number, config, state and history.

    `history` holds one `{"step": n, "metrics": {...}}` per report, oldest first; it is filled in
    for `should_stop` and `observe`, and may be empty in `suggest`.
    """

    number: int
    hyperparameters: dict[str, Any]
    state: str
    objective: float | None = None
    epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    parent: int | None = None


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
    """Decides what to try next. A search method never trains and never touches storage."""

    def __init__(self, spec: SweepSpec, seed: int | None = None):
        self.spec = spec
        self.seed = spec.seed if seed is None else seed

    @abc.abstractmethod
    def suggest(self, number: int, trials: list[TrialRecord]) -> dict[str, Any] | Suggestion | None:
        """The configuration of trial `number` (a dict, or a `Suggestion`), or None when there is
        nothing to run now: the space is exhausted, or (with `is_waiting`) the method waits for
        running trials to end."""

    def is_waiting(self, trials: list[TrialRecord]) -> bool:
        """True when `suggest` returned None only because running trials must end first."""
        return False

    def observe(self, trial: TrialRecord) -> None:  # noqa: B027 - optional hook
        """Learn from a finished trial (methods that model the objective override this)."""

    def should_stop(self, trial: TrialRecord, trials: list[TrialRecord]) -> bool:
        """Whether a running trial should end early (early-termination rules override this)."""
        return False
