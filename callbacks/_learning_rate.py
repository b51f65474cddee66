"""Reads an optimizer's learning rate on every Keras backend."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np


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


def schedule_values(schedule: Any, steps: list[int]) -> list[float]:
    """Evaluates a `LearningRateSchedule` at many steps, in one call where it can.

    One evaluation costs about a millisecond (a few backend ops), so per-batch rows are
    filled in together. The built-in schedules are elementwise in `step`; a schedule that
    is not is evaluated one step at a time.
    """
    try:
        values = keras.ops.convert_to_numpy(schedule(np.asarray(steps, dtype="int64")))
        if np.shape(values) == (len(steps),):
            return [float(value) for value in values]
    except Exception:
        pass
    return [schedule_value(schedule, step) for step in steps]
