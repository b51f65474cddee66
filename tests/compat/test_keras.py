"""The contract of the Keras internals ktsweep relies on: ktsweep/callbacks/compat/keras.py.
A failure names what moved and the module to update."""

from __future__ import annotations

import inspect

import keras
import numpy as np
import pytest

from ktsweep.callbacks.compat import keras as keras_compat

MODULE = "ktsweep/callbacks/compat/keras.py"


def moved(what: str) -> str:
    return f"keras {keras.__version__} moved {what}; update {MODULE}"


class RecordingCheckpoint(keras_compat.SaveReportingModelCheckpoint):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.saved: list[tuple[str, int, int | None]] = []

    def on_checkpoint_saved(self, filepath, epoch, batch, logs):
        self.saved.append((filepath, epoch, batch))


def fit(callbacks, epochs: int = 2, **kwargs) -> keras.Model:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.zeros((8, 2), "float32")
    model.fit(x, x[:, :1], epochs=epochs, batch_size=4, callbacks=callbacks, verbose=0, **kwargs)
    return model


def test_an_optimizer_keeps_its_schedule_as_given():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    optimizer = keras.optimizers.Adam(schedule)
    assert keras_compat.optimizer_learning_rate(optimizer) is schedule, moved(
        "Optimizer._learning_rate (the schedule itself)"
    )


def test_an_optimizer_keeps_a_fixed_learning_rate_in_a_variable_it_assigns():
    optimizer = keras.optimizers.Adam(0.01)
    variable = keras_compat.optimizer_learning_rate(optimizer)
    assert isinstance(variable, keras.Variable), moved("Optimizer._learning_rate (a variable)")
    optimizer.learning_rate = 0.5
    assert keras_compat.optimizer_learning_rate(optimizer) is variable, moved(
        "Optimizer._learning_rate (assigned in place)"
    )
    assert float(variable) == pytest.approx(0.5), moved("Optimizer._learning_rate")


def test_set_monitor_op_picks_the_direction_before_the_first_epoch():
    callback = keras.callbacks.ModelCheckpoint("m.keras", monitor="val_accuracy", mode="max")
    keras_compat.set_monitor_op(callback)
    assert callback.monitor_op is keras.ops.greater, moved("MonitorCallback._set_monitor_op")


def test_set_monitor_op_raises_value_error_for_a_direction_it_cannot_tell():
    callback = keras.callbacks.ModelCheckpoint("m.keras", monitor="mystery", mode="auto")
    with pytest.raises(ValueError):
        keras_compat.set_monitor_op(callback)


def test_every_epoch_save_is_reported_with_the_file_written(tmp_path):
    checkpoint = RecordingCheckpoint(str(tmp_path / "model-{epoch:02d}.keras"))
    fit([checkpoint])
    expected = [(str(tmp_path / f"model-0{n + 1}.keras"), n, None) for n in range(2)]
    assert checkpoint.saved == expected, moved(
        "ModelCheckpoint._should_save_model / _save_model (the epoch save path)"
    )
    assert all((tmp_path / f"model-0{n + 1}.keras").is_file() for n in range(2))


def test_batch_saves_are_reported_with_their_batch(tmp_path):
    checkpoint = RecordingCheckpoint(str(tmp_path / "model.weights.h5"), save_weights_only=True)
    checkpoint.save_freq = 2
    fit([checkpoint], epochs=1)
    assert checkpoint.saved == [(str(tmp_path / "model.weights.h5"), 0, 1)], moved(
        "ModelCheckpoint._save_model (the batch save path)"
    )


def test_a_save_that_save_best_only_skips_is_not_reported(tmp_path):
    checkpoint = RecordingCheckpoint(
        str(tmp_path / "model.keras"),
        monitor="loss",
        mode="min",
        save_best_only=True,
        initial_value_threshold=-1.0,
    )
    fit([checkpoint])
    assert checkpoint.saved == [], moved("ModelCheckpoint._should_save_model (its decision)")
    assert not (tmp_path / "model.keras").exists()


@pytest.mark.parametrize(
    ("name", "parameters"),
    [
        ("_should_save_model", ["self", "epoch", "batch", "logs", "filepath"]),
        ("_save_model", ["self", "epoch", "batch", "logs"]),
    ],
)
def test_the_checkpoint_methods_overridden_keep_their_signatures(name, parameters):
    method = getattr(keras.callbacks.ModelCheckpoint, name, None)
    assert callable(method), moved(f"ModelCheckpoint.{name}")
    assert list(inspect.signature(method).parameters) == parameters, moved(
        f"the signature of ModelCheckpoint.{name}"
    )


def test_a_wrapped_model_fit_sees_the_arguments_of_every_models_fit(tmp_path):
    seen = []

    def recording(original):
        def fit_and_record(*args, **kwargs):
            seen.append(inspect.signature(original).bind(*args, **kwargs).arguments)
            return original(*args, **kwargs)

        return fit_and_record

    keras_compat.wrap_model_fit(recording)
    try:
        fit([], epochs=1, validation_data=(np.zeros((2, 2)), np.zeros((2, 1))))
    finally:
        keras_compat.unwrap_model_fit()
    assert len(seen) == 1 and "validation_data" in seen[0], moved(
        "keras.Model.fit (patched on the class for every model)"
    )
    assert not getattr(keras.Model.fit, "__ktsweep_legacy__", False), moved(
        "keras.Model.fit (not restored by unwrap_model_fit)"
    )
