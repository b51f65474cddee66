"""A trainable that only sleeps: the benchmark for scheduling overhead (`bench/overhead.py`).

`build_model(hp)` returns a Keras model whose `fit` spends `epoch_s` seconds per epoch without
computing anything, and drives the callbacks exactly as Keras does, so a trial costs a known
time and everything else a sweep spends is overhead.
"""

from __future__ import annotations

import time

import keras
import numpy as np


class SleepingModel(keras.Model):
    """A model whose epochs only sleep; reports `loss` = 1 / epoch."""

    def __init__(self, epoch_s: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.epoch_s = epoch_s

    def fit(self, x=None, y=None, epochs=1, initial_epoch=0, callbacks=None, verbose=0, **kwargs):
        callback_list = keras.callbacks.CallbackList(
            callbacks, model=self, verbose=verbose, epochs=epochs, steps=1
        )
        self.stop_training = False
        callback_list.on_train_begin()
        history = keras.callbacks.History()
        history.set_model(self)
        history.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            callback_list.on_epoch_begin(epoch)
            time.sleep(self.epoch_s)
            logs = {"loss": 1.0 / (epoch + 1), "score": float(epoch + 1)}
            callback_list.on_epoch_end(epoch, logs)
            history.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        callback_list.on_train_end()
        return history


def build_model(hp) -> SleepingModel:
    return SleepingModel(epoch_s=hp.Float("epoch_s", 0.0, 1.0, default=0.1))


def load_data() -> dict:
    return {"x": np.zeros((1, 1), dtype="float32"), "y": np.zeros((1,), dtype="float32")}
