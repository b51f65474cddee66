"""Which Keras backend ktsweep runs on, and a one-line answer when none is installed.

ktsweep declares no backend of its own (`pip install "ktsweep[tensorflow]"`, `[jax]` or `[torch]`
brings one), so an environment that already has TensorFlow, JAX or PyTorch keeps it. Keras picks
its backend from `KERAS_BACKEND`, else `~/.keras/keras.json`, else TensorFlow. ktsweep keeps an
explicit `KERAS_BACKEND`; otherwise, when the backend Keras would pick is not installed, it picks
one that is (TensorFlow, JAX, then PyTorch) instead of failing on `import tensorflow`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys

# Backend name -> the module it needs.
BACKEND_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


class MissingBackendError(ImportError):
    """No Keras backend is installed, or the configured one is not."""


def _keras_json_backend() -> str | None:
    """The backend in Keras' config file (Keras writes its default there on first import)."""
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(keras_home, "keras.json")) as config:
            backend = json.load(config).get("backend")
    except (OSError, ValueError, AttributeError):
        return None
    return backend if isinstance(backend, str) else None


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _missing(backend: str, where: str) -> MissingBackendError:
    return MissingBackendError(
        f"Keras is set to the {backend} backend ({where}), but {BACKEND_MODULES[backend]} is not "
        f"installed: pip install 'ktsweep[{backend}]', or set KERAS_BACKEND to one you have."
    )


def require_backend() -> str:
    """Return the Keras backend to use, choosing an installed one if none is configured.

    Raises:
        MissingBackendError: No backend is installed, or the configured one is missing. The
            message names the extra to install.
    """
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "backend"):
        return keras.backend.backend()  # Keras is loaded: its backend is chosen already.
    chosen = os.environ.get("KERAS_BACKEND")
    if chosen:  # the user's explicit choice: use it or say what to install
        module = BACKEND_MODULES.get(chosen)
        if module is None or _installed(module):
            return chosen
        raise _missing(chosen, "KERAS_BACKEND")
    # keras.json often holds only the default Keras wrote on a first import, so a backend it
    # names that is gone gives way to one that is installed.
    configured = _keras_json_backend()
    if configured and _installed(BACKEND_MODULES.get(configured, configured)):
        return configured
    for backend, module in BACKEND_MODULES.items():
        if _installed(module):
            os.environ["KERAS_BACKEND"] = backend  # overrides keras.json, for Ray workers too
            return backend
    if configured:
        raise _missing(configured, "~/.keras/keras.json")
    raise MissingBackendError(
        "No Keras backend is installed: pip install 'ktsweep[tensorflow]' (or 'ktsweep[jax]', "
        "'ktsweep[torch]'), or install TensorFlow, JAX or PyTorch yourself."
    )
