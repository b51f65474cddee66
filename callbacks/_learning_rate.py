"""Reads an optimizer's learning rate on every Keras backend."""

from __future__ import annotations

from typing import Any

import keras


def learning_rate_schedule(optimizer: Any) -> Any:
    """Returns the optimizer's learning-rate schedule or callable, or None for a fixed value."""
    # Keras 3 keeps the schedule itself in `_learning_rate`; `learning_rate` only
    # exposes its value at `optimizer.iterations`, which a resumed fit restarts at 0.
    schedule = getattr(optimizer, "_learning_rate", None)
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule) or (
        callable(schedule) and not isinstance(schedule, keras.Variable)
    ):
        return schedule
    return None


def schedule_value(schedule: Any, step: int) -> float:
    """Evaluates a learning-rate schedule (or a zero-argument callable) at `step`."""
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        return float(keras.ops.convert_to_numpy(schedule(step)))
    return float(keras.ops.convert_to_numpy(schedule()))


def fixed_value(optimizer: Any) -> float:
    """Returns the current value of an optimizer's fixed learning rate."""
    # `float()` on the variable is the cheapest read on every backend (tens of microseconds).
    return float(optimizer.learning_rate)
