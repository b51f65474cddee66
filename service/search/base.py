"""The interface every search method implements: suggest, observe, should-stop."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

from service.spec import SweepSpec


@dataclass
class TrialRecord:
    """What a search method may know of a trial: its number, config, state and history."""

    number: int
    hyperparameters: dict[str, Any]
    state: str
    objective: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


class SearchMethod(abc.ABC):
    """Decides what to try next. A search method never trains and never touches storage."""

    def __init__(self, spec: SweepSpec, seed: int | None = None):
        self.spec = spec
        self.seed = spec.seed if seed is None else seed

    @abc.abstractmethod
    def suggest(self, number: int, trials: list[TrialRecord]) -> dict[str, Any] | None:
        """The configuration of trial `number`, or None when the space is exhausted."""

    def observe(self, trial: TrialRecord) -> None:  # noqa: B027 - optional hook
        """Learn from a finished trial (methods that model the objective override this)."""

    def should_stop(self, trial: TrialRecord, trials: list[TrialRecord]) -> bool:
        """Whether a running trial should end early (early-termination rules override this)."""
        return False
