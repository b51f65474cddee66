"""Discovers the search space a Keras Tuner hypermodel declares, the way Keras Tuner does.

`build(hp)` declares its hyperparameters as it runs (`hp.Int`, `hp.Float`, `hp.Choice`,
`hp.Boolean`, `hp.Fixed`, and conditional scopes). Keras Tuner finds them by building the model,
then building it again with values that activate each conditional scope not yet seen, until every
scope has been active once; a tuner does this when it is created. We create a throwaway Keras
Tuner tuner in a temporary folder and read its oracle's space, so the space is exactly the one
Keras Tuner itself would search. That runs in a child process (`user_code`), never in the
controller's.
"""

from __future__ import annotations

import functools
from typing import Any


class SpaceDiscoveryError(ValueError):
    """A hypermodel whose search space cannot be discovered."""


def discover_space(hypermodel: str) -> Any:
    """The `keras_tuner.HyperParameters` that `build(hp)` at entry point `hypermodel` declares.

    Args:
        hypermodel: `module:function` (or `module:HyperModelClass`) of the hypermodel.

    Raises:
        SpaceDiscoveryError: the entry point cannot be imported, or building fails.
    """
    return _discover(hypermodel).copy()


@functools.lru_cache(maxsize=32)
def _discover(hypermodel: str) -> Any:
    import keras_tuner as kt

    from ktsweep.service.search.user_code import UserCodeError, ask_child

    try:
        answer = ask_child({"hypermodel": hypermodel})
    except UserCodeError as exc:
        raise SpaceDiscoveryError(str(exc)) from None
    if answer["problems"]:
        raise SpaceDiscoveryError(answer["problems"][0]["message"])
    return kt.HyperParameters.from_config(answer["space"])
