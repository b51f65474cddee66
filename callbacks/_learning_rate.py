"""Reads an optimizer's learning rate on every Keras backend."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from ktsweep.callbacks.compat.keras import optimizer_learning_rate


def learning_rate_schedule(optimizer: Any) -> Any:
    """Returns the optimizer's learning-rate schedule or callable, or None for a fixed value."""
    # Not the public `learning_rate`: that is the schedule's value at `optimizer.iterations`,
    # which a resumed fit restarts at 0.
    schedule = optimizer_learning_rate(optimizer)
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


_ASSIGNS = ("assign", "assign_add", "assign_sub")


class FixedLearningRateReader:
    """Reads an optimizer's fixed learning rate once per change instead of once per batch.

    On TensorFlow a read is an eager op, about 0.1 ms inside `fit` (2-3% of a small
    model's step), so per-batch logging keeps the last value and reads again only
    after the variable is assigned: every change from Python (`optimizer.learning_rate
    = ...`, which `LearningRateScheduler` and `ReduceLROnPlateau` use, or
    `learning_rate.assign(...)`) goes through the variable's `assign` methods, which
    the reader wraps on that one variable until `close()`. `refresh()` forgets the
    value (call it at epoch boundaries). Where the variable can't be wrapped, or the
    optimizer's learning rate is replaced, every `read()` reads.
    """

    def __init__(self, optimizer: Any) -> None:
        self._optimizer = optimizer
        self._variable = optimizer_learning_rate(optimizer)
        self._value: float | None = None
        self._wrappers: dict[str, Any] = {}
        if isinstance(self._variable, keras.Variable):
            self._wrap_assigns()

    def read(self) -> float:
        if not self._wrappers or optimizer_learning_rate(self._optimizer) is not self._variable:
            return fixed_value(self._optimizer)
        if self._value is None:
            self._value = fixed_value(self._optimizer)
        return self._value

    def refresh(self) -> None:
        self._value = None

    def close(self) -> None:
        """Unwraps the variable's `assign` methods."""
        for name, wrapper in self._wrappers.items():
            if vars(self._variable).get(name) is wrapper:
                delattr(self._variable, name)
        self._wrappers = {}

    def _wrap_assigns(self) -> None:
        for name in _ASSIGNS:
            original = getattr(self._variable, name, None)
            if original is None:
                continue

            def wrapper(*args: Any, __original: Any = original, **kwargs: Any) -> Any:
                self._value = None
                return __original(*args, **kwargs)

            try:
                setattr(self._variable, name, wrapper)
            except (AttributeError, TypeError):
                self.close()
                return
            self._wrappers[name] = wrapper
