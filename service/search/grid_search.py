"""Grid search: every combination of the parameters' values, once each."""

from __future__ import annotations

from typing import Any

from service.search.base import SearchMethod, TrialRecord


class GridSearch(SearchMethod):
    """Walks the Cartesian product of all values in a fixed order; exhausted after the last.

    A continuous parameter has no finite set of values, so it is an error, as in W&B.
    Hyperparameters inside an inactive conditional scope are left out of a combination.

    Raises:
        ValueError: a dimension of the space is continuous.
    """

    def __init__(self, spec, seed=None, space=None, stopping_rule=None):
        super().__init__(spec, seed, space, stopping_rule)
        problems = self.space.check_grid()
        if problems:
            raise ValueError(" ".join(problems))
        self._grid = self.space.grid()

    def __len__(self) -> int:
        return len(self._grid)

    def suggest(self, number: int, trials: list[TrialRecord]) -> dict[str, Any] | None:
        if number >= len(self._grid):
            return None
        return self._grid[number]
