"""Legacy mode: `from wandb.keras import ...` imports this package's callbacks.

wandb removed the `wandb.keras` module and the `WandbCallback` it held, so old
training scripts fail at their first import. After `enable()`, those imports
resolve to this package, and the script runs unchanged:

```python
import ktsweep.callbacks.legacy

ktsweep.callbacks.legacy.enable()
from wandb.keras import WandbCallback  # ktsweep.callbacks.WandbCallback
```

wandb's callback also read the `validation_data` passed to `fit`, which Keras 3
no longer gives callbacks. So while legacy mode is on, `keras.Model.fit` hands
its `validation_data` to each `WandbCallback` in its `callbacks` for the length
of the call.

The worker calls `enable()` for a sweep whose spec says `callbacks: {legacy: true}`.
"""

from __future__ import annotations

import functools
import inspect
import sys
import types
from collections.abc import Callable
from typing import Any

from ktsweep.callbacks.compat import keras as keras_compat
from ktsweep.callbacks.compat import wandb as wandb_compat

_EXPORTS = (
    "WandbCallback",
    "WandbMetricsLogger",
    "WandbModelCheckpoint",
    "WandbEvalCallback",
)


def enable() -> None:
    """Makes `wandb.keras` an alias of this package's callbacks. Safe to call twice.

    Also makes `keras.Model.fit` give its `validation_data` to the `WandbCallback`s
    it runs, as wandb's patch of `fit` did.
    """
    from ktsweep import callbacks

    module = types.ModuleType(
        wandb_compat.WANDB_KERAS, "The W&B Keras callbacks, provided by ktsweep."
    )
    for name in _EXPORTS:
        setattr(module, name, getattr(callbacks, name))
    module.__all__ = list(_EXPORTS)
    module.__ktsweep_legacy__ = True
    wandb_compat.set_wandb_keras(module)
    keras_compat.wrap_model_fit(_handing_validation_data_to_callbacks)


def disable() -> None:
    """Undoes `enable()`: `wandb.keras` no longer resolves and `fit` is Keras's own."""
    if is_enabled():
        wandb_compat.set_wandb_keras(None)
    keras_compat.unwrap_model_fit()


def is_enabled() -> bool:
    """Whether `enable()` is in effect."""
    return getattr(sys.modules.get(wandb_compat.WANDB_KERAS), "__ktsweep_legacy__", False)


def _handing_validation_data_to_callbacks(fit: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(fit)

    @functools.wraps(fit)
    def fit_with_validation_data_for_wandb_callback(*args: Any, **kwargs: Any) -> Any:
        from ktsweep.callbacks.wandb_callback import WandbCallback

        try:
            arguments = signature.bind(*args, **kwargs).arguments
        except TypeError:
            return fit(*args, **kwargs)  # Keras raises its own error for wrong arguments
        callbacks = arguments.get("callbacks") or []
        # `fit` also takes a `keras.callbacks.CallbackList`.
        callbacks = getattr(callbacks, "callbacks", callbacks)
        receivers = [c for c in callbacks if isinstance(c, WandbCallback)]
        for callback in receivers:
            callback.fit_validation_data = arguments.get("validation_data")
        try:
            return fit(*args, **kwargs)
        finally:
            for callback in receivers:
                callback.fit_validation_data = None

    return fit_with_validation_data_for_wandb_callback
