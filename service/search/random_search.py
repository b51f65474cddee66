"""Random search: every trial an independent draw from the parameters' distributions."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from ktsweep.service.search.base import SearchMethod, TrialRecord

if TYPE_CHECKING:
    from ktsweep.service.search.warm_start import PriorTrial


class RandomSearch(SearchMethod):
    """Draws each trial's configuration independently, each parameter from its distribution.

    Trial `n` of a seeded sweep always gets the same configuration, so a restarted controller
    suggests what it would have suggested before.
    """

    suggests_ahead = True

    def suggest(self, number: int, trials: list[TrialRecord]) -> dict[str, Any] | None:
        rng = random.Random(None if self.seed is None else f"{self.seed}:{number}")
        return self.space.sample(rng)

    def learn_prior_trials(self, trials: list[PriorTrial]) -> None:
        """Accept trials of earlier sweeps (a warm start); random search draws without them."""
