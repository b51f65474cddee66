"""ktsweep: hyperparameter sweeps of Keras models on Ray, tracked in W&B.

The one import namespace of the project:

- `from ktsweep import distribute`: an existing Keras Tuner script's trials, in parallel on Ray;
- `from ktsweep.callbacks import MetricsLogger, ModelCheckpoint, ...`: the Keras callbacks;
- `from ktsweep.client import Client`: the controller's REST API from Python;
- `ktsweep.service` (the controller), `ktsweep.worker` (trial runners) and `ktsweep.examples`.

Names are imported on first use, so `import ktsweep` imports neither Keras nor Ray.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ktsweep")
except PackageNotFoundError:  # a source checkout that was never installed
    __version__ = "0+unknown"

_EXPORTS = {
    "distribute": "ktsweep.worker.distributed_search",
    "DistributedSearch": "ktsweep.worker.distributed_search",
    "Client": "ktsweep.client",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ktsweep' has no attribute {name!r}")
    if name in {"distribute", "DistributedSearch"}:
        from ktsweep.backend import MissingBackendError, require_backend

        try:
            require_backend()
        except MissingBackendError as exc:
            raise SystemExit(f"ktsweep: {exc}") from None
    return getattr(importlib.import_module(_EXPORTS[name]), name)
