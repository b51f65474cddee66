"""Gradients of a compiled model's loss, with the autodiff of the backend Keras runs on."""

from __future__ import annotations

import sys
from typing import Any

import keras
import numpy as np


def loss_gradients(model: keras.Model, x: Any, y: Any) -> list[tuple[str, np.ndarray]]:
    """Returns `(variable path, gradient)` for each trainable variable, on one batch.

    Uses the backend module Keras has already loaded (`sys.modules`), so this
    package never imports a backend itself.
    """
    backend = keras.backend.backend()
    variables = model.trainable_variables
    if backend == "tensorflow":
        tf = sys.modules["tensorflow"]
        with tf.GradientTape() as tape:
            loss = _loss(model, x, y)
        gradients = tape.gradient(loss, variables)
    elif backend == "torch":
        torch = sys.modules["torch"]
        loss = _loss(model, x, y)
        gradients = torch.autograd.grad(loss, [v.value for v in variables], allow_unused=True)
    elif backend == "jax":
        jax = sys.modules["jax"]
        trainable = [v.value for v in variables]
        non_trainable = [v.value for v in model.non_trainable_variables]

        def loss_of(values: list) -> Any:
            y_pred, _ = model.stateless_call(values, non_trainable, x, training=False)
            return keras.ops.mean(_compiled_loss(model)(y, y_pred))

        gradients = jax.grad(loss_of)(trainable)
    else:
        raise ValueError(
            f"`log_gradients` supports the TensorFlow, JAX and PyTorch backends, not {backend!r}. "
            "Set KERAS_BACKEND to one of them or pass `log_gradients=False`."
        )
    return [
        (variable.path, keras.ops.convert_to_numpy(gradient))
        for variable, gradient in zip(variables, gradients, strict=True)
        if gradient is not None
    ]


def _loss(model: keras.Model, x: Any, y: Any) -> Any:
    y_pred = model(x, training=False)
    # Loss functions (as opposed to `Loss` objects) return one value per sample.
    return keras.ops.mean(_compiled_loss(model)(y, y_pred))


def _compiled_loss(model: keras.Model) -> Any:
    if model.loss is None:
        raise ValueError(
            "`log_gradients=True` needs a compiled loss: call `model.compile(loss=...)` first."
        )
    loss = keras.losses.get(model.loss) if isinstance(model.loss, str) else model.loss
    if not callable(loss):
        raise ValueError(
            "`log_gradients=True` supports models compiled with one loss; this model has "
            f"{type(model.loss).__name__} losses. Pass `log_gradients=False`."
        )
    return loss
