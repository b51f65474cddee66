"""Legacy mode: `from wandb.keras import ...` imports this package's callbacks.

wandb removed the `wandb.keras` module and the `WandbCallback` it held, so old
training scripts fail at their first import. After `enable()`, those imports
resolve to this package, and the script runs unchanged:

```python
import ktsweep.callbacks.legacy

ktsweep.callbacks.legacy.enable()
from wandb.keras import WandbCallback  # ktsweep.callbacks.WandbCallback
```

The worker calls `enable()` for a sweep whose spec says `callbacks: {legacy: true}`.
"""

from __future__ import annotations

import sys
import types

import wandb

_MODULE_NAME = "wandb.keras"
_EXPORTS = (
    "WandbCallback",
    "WandbMetricsLogger",
    "WandbModelCheckpoint",
    "WandbEvalCallback",
)


def enable() -> None:
    """Makes `wandb.keras` an alias of this package's callbacks. Safe to call twice."""
    from ktsweep import callbacks

    module = types.ModuleType(_MODULE_NAME, "The W&B Keras callbacks, provided by ktsweep.")
    for name in _EXPORTS:
        setattr(module, name, getattr(callbacks, name))
    module.__all__ = list(_EXPORTS)
    module.__ktsweep_legacy__ = True
    sys.modules[_MODULE_NAME] = module
    wandb.keras = module


def disable() -> None:
    """Undoes `enable()`: `wandb.keras` no longer resolves."""
    if is_enabled():
        del sys.modules[_MODULE_NAME]
        del wandb.keras


def is_enabled() -> bool:
    """Whether `enable()` is in effect."""
    return getattr(sys.modules.get(_MODULE_NAME), "__ktsweep_legacy__", False)
