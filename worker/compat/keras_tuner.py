"""The Keras Tuner internals the worker relies on (contract: tests/compat/test_keras_tuner.py).

A distributed trial does on a Ray worker what `BaseTuner._try_run_and_update_trial` does in the
tuner's process; these are the pieces of it Keras Tuner does not export.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Keras Tuner exports neither the checks and conversions of `run_trial`'s return value nor
# how a reported metric gets its direction; using its own keeps a trial scored as it scores it.
from keras_tuner.src.engine import tuner_utils as _tuner_utils
from keras_tuner.src.engine.oracle import _maybe_infer_direction_from_objective


def metric_direction(objective: Any, metric_name: str) -> str | None:
    """`"min"` or `"max"` for a metric that is (one of) the objective, else None."""
    # What `Oracle.update_trial` registers a new metric with.
    return _maybe_infer_direction_from_objective(objective, metric_name)


def validate_trial_results(results: Any, objective: Any, func_name: str) -> None:
    """Raises Keras Tuner's own error when `run_trial` returned something it can't score."""
    # What `BaseTuner` checks `run_trial`'s return value with.
    _tuner_utils.validate_trial_results(results, objective, func_name)


def metrics_dict(results: Any, objective: Any) -> dict[str, Any]:
    """The metrics of `run_trial`'s return value (a number, a dict, a `History`, or a list)."""
    # What `BaseTuner` turns `run_trial`'s return value into before `update_trial`.
    return _tuner_utils.convert_to_metrics_dict(results, objective)


def best_step(results: Any, objective: Any) -> int:
    """The step (epoch) of the best objective value in `run_trial`'s return value."""
    # What `BaseTuner` reports the metrics at.
    return _tuner_utils.get_best_step(results, objective)


def wrap_build(tuner: Any, wrap: Callable[[Callable[[Any], Any]], Callable[[Any], Any]]) -> None:
    """Makes the tuner build its models with `wrap(build)`, where `build(hp)` is its own."""
    # `Tuner._try_build` is where `run_trial` builds the model (with the user's `build(hp)`,
    # retries and size checks); a resumed trial loads its checkpoint into that model.
    tuner._try_build = wrap(tuner._try_build)
