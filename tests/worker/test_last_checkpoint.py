"""`LastEpochCheckpoint`: the resumable checkpoint of a trial's latest epoch."""

from __future__ import annotations

import keras
import keras_tuner as kt
import numpy as np

from ktsweep.examples.digits import build_model
from ktsweep.worker.last_checkpoint import (
    LastEpochCheckpoint,
    last_checkpoint_record,
    read_last_checkpoint,
)


class SeenAfterEachEpoch(keras.callbacks.Callback):
    """Records, after each epoch, how many epochs the checkpoint on disk holds."""

    def __init__(self, directory) -> None:
        super().__init__()
        self.directory = directory
        self.seen: list[int | None] = []

    def on_epoch_end(self, epoch, logs=None):
        last = read_last_checkpoint(self.directory)
        self.seen.append(last[1] if last else None)


def fit(directory, epochs: int, **checkpoint_args) -> list[int | None]:
    rng = np.random.default_rng(0)
    x = rng.random((64, 64), dtype=np.float32)
    y = rng.integers(0, 10, 64)
    seen = SeenAfterEachEpoch(directory)
    model = build_model(kt.HyperParameters())
    callbacks = [LastEpochCheckpoint(directory, **checkpoint_args), seen]
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0, callbacks=callbacks)
    return seen.seen


def test_saves_every_epoch_by_default(tmp_path):
    assert fit(tmp_path, epochs=3) == [1, 2, 3]


def test_every_s_skips_epochs_in_between_but_always_saves_the_last(tmp_path):
    assert fit(tmp_path, epochs=3, every_s=3600) == [None, None, 3]
    path, epochs = read_last_checkpoint(tmp_path)
    assert epochs == 3
    restored = keras.models.load_model(path)
    assert restored.optimizer.iterations.numpy() == 3 * 2  # two batches per epoch


class StopAfter(keras.callbacks.Callback):
    def __init__(self, epochs: int) -> None:
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            self.model.stop_training = True


def test_training_stopped_early_saves_the_epoch_it_stopped_at(tmp_path):
    rng = np.random.default_rng(0)
    model = build_model(kt.HyperParameters())
    callbacks = [LastEpochCheckpoint(tmp_path, every_s=3600), StopAfter(2)]
    model.fit(
        rng.random((64, 64), dtype=np.float32),
        rng.integers(0, 10, 64),
        epochs=5,
        batch_size=32,
        verbose=0,
        callbacks=callbacks,
    )
    assert read_last_checkpoint(tmp_path)[1] == 2


def test_the_record_keeps_every_epochs_metrics_up_to_the_checkpoint(tmp_path):
    fit(tmp_path, epochs=3, every_s=3600)
    record = last_checkpoint_record(tmp_path)
    assert record["epoch"] == 3
    assert [entry["step"] for entry in record["history"]] == [1, 2, 3]
    assert all("loss" in entry["metrics"] for entry in record["history"])
