"""Grid search: every combination of the parameters' values, once each."""

from __future__ import annotations

import json
from typing import Any

from ktsweep.service.search.base import SearchMethod, TrialRecord
from ktsweep.service.search.space import SearchSpace
from ktsweep.service.spec import SpecProblem, SweepSpec


class GridSearch(SearchMethod):
    """Walks the Cartesian product of all values in a fixed order; exhausted after the last.

    Each trial gets the first combination no trial of the sweep has had yet (as W&B's grid
    does), so after a controller restart the grid goes on where it was, whichever order the
    earlier trials took. A continuous parameter has no finite set of values, so it is an error,
    as in W&B. Hyperparameters inside an inactive conditional scope are left out of a
    combination. The grid is indexed, not built (see `SearchSpace.grid`): a large one costs
    no memory, and `check_grid_size` refuses one too large at submission.

    Raises:
        ValueError: a dimension of the space is continuous.
    """

    suggests_ahead = True

    def __init__(self, spec, seed=None, space=None, stopping_rule=None):
        super().__init__(spec, seed, space, stopping_rule)
        problems = self.space.check_grid()
        if problems:
            raise ValueError(" ".join(problems))
        self._grid = self.space.grid()
        self._tried: set[str] = set()
        self._next = 0  # every combination before it has been tried

    def __len__(self) -> int:
        return len(self._grid)

    def suggest(self, number: int, trials: list[TrialRecord]) -> dict[str, Any] | None:
        tried = self._tried | {_key(trial.hyperparameters) for trial in trials}
        while self._next < len(self._grid) and _key(self._grid[self._next]) in tried:
            self._next += 1
        if self._next >= len(self._grid):
            return None
        config = self._grid[self._next]
        self._tried.add(_key(config))
        return config

    def restore(self, trials: list[TrialRecord]) -> None:
        self._tried.update(_key(trial.hyperparameters) for trial in trials)
        super().restore(trials)


def _key(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, default=repr)


def check_grid_size(spec: SweepSpec, max_size: int) -> list[SpecProblem]:
    """A problem when the grid of the spec's `parameters` has more than `max_size`
    combinations (KTSWEEP_MAX_GRID_SIZE); computed without building the grid. (The space a
    hypermodel's `build(hp)` adds is counted too, once it is discovered: `check_search_space`.)
    """
    try:
        size = SearchSpace.from_spec(spec).grid_size()
    except ValueError:
        return []  # a continuous parameter: `check_search_space` says what to do
    return grid_size_problems(size, max_size)


def grid_size_problems(size: int, max_size: int) -> list[SpecProblem]:
    """A problem when a grid of `size` combinations is over `max_size`."""
    if size <= max_size:
        return []
    return [
        SpecProblem(
            path="parameters",
            message=f"this grid has {size} combinations, more than the {max_size} a grid sweep "
            "may have (KTSWEEP_MAX_GRID_SIZE); list fewer values, or search the space with "
            "method random, bayes or tpe and a `run_cap`.",
        )
    ]
