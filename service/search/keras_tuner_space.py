"""Discovers the search space a Keras Tuner hypermodel declares, the way Keras Tuner does.

`build(hp)` declares its hyperparameters as it runs (`hp.Int`, `hp.Float`, `hp.Choice`,
`hp.Boolean`, `hp.Fixed`, and conditional scopes). Keras Tuner finds them by building the model,
then building it again with values that activate each conditional scope not yet seen, until every
scope has been active once; a tuner does this when it is created. We create a throwaway Keras
Tuner tuner in a temporary folder and read its oracle's space, so the space is exactly the one
Keras Tuner itself would search.
"""

from __future__ import annotations

import functools
import tempfile
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
    from ktsweep.worker.entry_points import EntryPointError, resolve_entry_point

    try:
        build = resolve_entry_point(hypermodel)
    except EntryPointError as exc:
        raise SpaceDiscoveryError(str(exc)) from None
    import keras
    import keras_tuner as kt

    if isinstance(build, type) and issubclass(build, kt.HyperModel):
        build = build()
    try:
        with tempfile.TemporaryDirectory() as directory:
            tuner = kt.RandomSearch(
                hypermodel=build,
                objective="val_loss",
                max_trials=1,
                directory=directory,
                project_name="space",
                overwrite=True,
            )
            return tuner.oracle.get_space()
    except Exception as exc:
        raise SpaceDiscoveryError(
            f"building the model with `{hypermodel}` to discover its hyperparameters failed: "
            f"{type(exc).__name__}: {exc}. Fix `build(hp)`, or list the hyperparameters in "
            "`parameters`."
        ) from exc
    finally:
        keras.backend.clear_session()
