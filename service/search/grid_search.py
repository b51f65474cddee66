"""Grid search: every combination of the parameters' values, once each."""

from __future__ import annotations

import itertools
from typing import Any

from service.search.base import SearchMethod, TrialRecord
from service.search.distributions import grid_values
from service.spec import ParameterSpec


def _leaves(parameters: dict[str, ParameterSpec], prefix: tuple[str, ...] = ()):
    for name, parameter in parameters.items():
        if parameter.parameters is not None:
            yield from _leaves(parameter.parameters, (*prefix, name))
        else:
            yield (*prefix, name), parameter


class GridSearch(SearchMethod):
    """Walks the Cartesian product of all values in a fixed order; exhausted after the last."""

    def __init__(self, spec, seed=None):
        super().__init__(spec, seed)
        leaves = list(_leaves(spec.parameters or {}))
        self._paths = [path for path, _ in leaves]
        self._grid = list(itertools.product(*(grid_values(p) for _, p in leaves)))

    def __len__(self) -> int:
        return len(self._grid)

    def suggest(self, number: int, trials: list[TrialRecord]) -> dict[str, Any] | None:
        if number >= len(self._grid):
            return None
        config: dict[str, Any] = {}
        for path, value in zip(self._paths, self._grid[number], strict=True):
            node = config
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = value
        return config
