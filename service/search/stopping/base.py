"""The interface of early-termination rules: decide from metric histories whether to stop."""

from __future__ import annotations

import abc

from ktsweep.service.search.base import TrialRecord


class StoppingRule(abc.ABC):
    """Decides whether a running trial should end early, from the metric histories of the sweep.

    Args:
        metric: Name of the metric reported at each step.
        maximize: Whether larger values of the metric are better. Default False.
    """

    def __init__(self, metric: str, maximize: bool = False):
        self.metric = metric
        self.maximize = maximize

    @abc.abstractmethod
    def should_stop(self, trial: TrialRecord, trials: list[TrialRecord]) -> bool:
        """Whether `trial` (running, with its history so far) should stop now.

        Args:
            trial: The trial that just reported a step.
            trials: Every trial of the sweep (including `trial`), with their histories.
        """

    def trial_ended(self, trial: TrialRecord) -> None:  # noqa: B027 - optional hook
        """Called once when a trial ends (any final state)."""
