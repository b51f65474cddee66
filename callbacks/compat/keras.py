"""The Keras internals the callbacks rely on (contract: tests/compat/test_keras.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

# Marks the `fit` that `wrap_model_fit` installed.
_WRAPPED = "__ktsweep_legacy__"
_MISSING = object()
# What `keras.Model.__dict__["fit"]` was before `wrap_model_fit`: `_MISSING` when `fit` is
# inherited from the backend's trainer, which is the case in Keras 3.
_fit_before_wrap: Any = _MISSING


def optimizer_learning_rate(optimizer: Any) -> Any:
    """The optimizer's learning rate as it was given: a variable, a schedule or a callable."""
    # Keras 3 keeps the schedule itself only in `_learning_rate`; the public `learning_rate`
    # is its value at `optimizer.iterations`, which a resumed fit restarts at 0.
    return getattr(optimizer, "_learning_rate", None)


def set_monitor_op(callback: Any) -> None:
    """Sets a `MonitorCallback`'s `monitor_op` (raises `ValueError` when `mode` can't be told)."""
    # Keras sets `monitor_op` only at the first epoch end, through this private method; a
    # checkpoint that marks its best save needs it from the first batch save on.
    callback._set_monitor_op()


class SaveReportingModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """`keras.callbacks.ModelCheckpoint` that calls `on_checkpoint_saved` after each file it writes.

    Keras has no public hook for "a checkpoint was written": whether an epoch or batch saves
    (every time, or only when `monitor` improves, with its fallbacks) and to which formatted
    path is decided inside the two private methods overridden here.
    """

    # The path `_should_save_model` approved for the save in progress, or None.
    _pending_save: str | None = None

    def on_checkpoint_saved(
        self, filepath: str, epoch: int, batch: int | None, logs: dict[str, Any]
    ) -> None:
        """Called after `filepath` was written at `epoch` (and `batch` for batch saves)."""

    def _should_save_model(self, epoch, batch, logs, filepath) -> bool:
        # Keras's own decision (and formatted path) for this save, observed, not changed.
        should_save = super()._should_save_model(epoch, batch, logs, filepath)
        self._pending_save = filepath if should_save else None
        return should_save

    def _save_model(self, epoch, batch, logs) -> None:
        # Keras's only save path (epoch and batch hooks both call it); the file exists after it.
        self._pending_save = None
        super()._save_model(epoch, batch, logs)
        if self._pending_save is not None:
            self.on_checkpoint_saved(self._pending_save, epoch, batch, logs or {})


def wrap_model_fit(wrap: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """Replaces `keras.Model.fit` with `wrap(fit)` until `unwrap_model_fit()`; idempotent."""
    # A patch of Keras's class: Keras 3 no longer gives callbacks `fit`'s `validation_data`,
    # which the legacy `WandbCallback` reads, and has no hook that sees `fit`'s arguments.
    global _fit_before_wrap
    if getattr(keras.Model.fit, _WRAPPED, False):
        return
    _fit_before_wrap = keras.Model.__dict__.get("fit", _MISSING)
    wrapped = wrap(keras.Model.fit)
    setattr(wrapped, _WRAPPED, True)
    keras.Model.fit = wrapped


def unwrap_model_fit() -> None:
    """Puts back the `keras.Model.fit` that `wrap_model_fit` replaced."""
    global _fit_before_wrap
    if not getattr(keras.Model.__dict__.get("fit"), _WRAPPED, False):
        return
    if _fit_before_wrap is _MISSING:
        del keras.Model.fit
    else:
        keras.Model.fit = _fit_before_wrap
    _fit_before_wrap = _MISSING
