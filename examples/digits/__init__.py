"""An MLP on scikit-learn's bundled 8x8 digits: the example sweep's hypermodel and data.

Use it in a sweep spec as `hypermodel: ktsweep.examples.digits:build_model` and
`data: ktsweep.examples.digits:load_data`.
"""

from __future__ import annotations

import keras
import keras_tuner as kt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

NUM_CLASSES = 10


def build_model(hp: kt.HyperParameters) -> keras.Model:
    """A compiled MLP whose units, dropout and learning rate come from `hp`."""
    units = hp.Int("units", min_value=16, max_value=256, step=16, default=64)
    dropout = hp.Float("dropout", min_value=0.0, max_value=0.5, default=0.1)
    learning_rate = hp.Float("learning_rate", 1e-4, 1e-1, sampling="log", default=1e-3)
    model = keras.Sequential(
        [
            keras.Input(shape=(64,)),
            keras.layers.Dense(units, activation="relu"),
            keras.layers.Dropout(dropout),
            keras.layers.Dense(NUM_CLASSES, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def load_data(validation_fraction: float = 0.2, seed: int = 0) -> dict:
    """Digits scaled to [0, 1], split into training and validation sets (stratified)."""
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int32)
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=validation_fraction, random_state=seed, stratify=y
    )
    return {"x": x_train, "y": y_train, "validation_data": (x_val, y_val)}
