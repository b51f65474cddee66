"""The TensorFlow internals the worker relies on (contract: tests/compat/test_tensorflow.py)."""

from __future__ import annotations

import sys


def gradient_registry() -> dict | None:
    """TensorFlow's registry of gradient functions by op name; None where TF isn't loaded.

    In graph mode each `tf.custom_gradient` call registers its gradient function in it under a
    new name `CustomGradient-<n>`, and no public API ever removes one.
    """
    if "tensorflow" not in sys.modules:
        return None
    try:
        # `tensorflow.python` is TensorFlow's internal package: the registry has no public name.
        from tensorflow.python.framework import ops
    except ImportError:
        return None
    # `_gradient_registry` is the `Registry` gradients are registered in; `_registry` its dict.
    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    return registry if isinstance(registry, dict) else None
