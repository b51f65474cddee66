"""The contract of the TensorFlow internals ktsweep relies on: ktsweep/worker/compat/tensorflow.py.
A failure names what moved and the module to update."""

from __future__ import annotations

import pytest

tf = pytest.importorskip("tensorflow")

from ktsweep.worker.compat.tensorflow import gradient_registry  # noqa: E402

MODULE = "ktsweep/worker/compat/tensorflow.py"


def moved(what: str) -> str:
    return f"tensorflow {tf.__version__} moved {what}; update {MODULE}"


def test_the_gradient_registry_is_a_dict():
    assert isinstance(gradient_registry(), dict), moved(
        "tensorflow.python.framework.ops._gradient_registry._registry"
    )


def test_a_traced_custom_gradient_registers_under_a_custom_gradient_name():
    registry = gradient_registry()
    before = set(registry)

    @tf.custom_gradient
    def identity(x):
        return tf.identity(x), lambda dy: dy

    tf.function(identity)(tf.constant(1.0))
    added = [name for name in registry if name not in before]
    assert any(str(name).startswith("CustomGradient-") for name in added), moved(
        "where tf.custom_gradient registers its gradient in graph mode ('CustomGradient-<n>')"
    )
    for name in added:
        registry.pop(name, None)
