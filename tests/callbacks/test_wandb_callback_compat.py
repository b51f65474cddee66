"""The legacy `WandbCallback` behaves as wandb's last `wandb.keras.WandbCallback` (0.15, 0.16).

Each test runs an old script's pattern: legacy mode, `from wandb.keras import
WandbCallback`, a real offline run and a real `fit` on digits, then reads what
the run recorded and compares it with what wandb's callback logged (wandb's own
tests in `tests/.../test_keras.py` of those releases).
"""

from __future__ import annotations

import inspect

import keras
import numpy as np
import pytest
import wandb

import ktsweep.callbacks.legacy

# Every parameter of `wandb.keras.WandbCallback.__init__` in wandb 0.15 and 0.16, and
# `data_type`, which it read from `**kwargs`.
WANDB_0_16_PARAMETERS = (
    "monitor",
    "verbose",
    "mode",
    "save_weights_only",
    "log_weights",
    "log_gradients",
    "save_model",
    "training_data",
    "validation_data",
    "labels",
    "predictions",
    "generator",
    "input_type",
    "output_type",
    "log_evaluation",
    "validation_steps",
    "class_colors",
    "log_batch_frequency",
    "log_best_prefix",
    "save_graph",
    "validation_indexes",
    "validation_row_processor",
    "prediction_row_processor",
    "infer_missing_processors",
    "log_evaluation_frequency",
    "compute_flops",
    "data_type",
)
DIGIT_NAMES = [f"digit {i}" for i in range(10)]


@pytest.fixture
def legacy_mode():
    ktsweep.callbacks.legacy.enable()
    yield
    ktsweep.callbacks.legacy.disable()


def old_script_fit(model, digits, callback, epochs=1, **fit_arguments):
    """`fit` as old scripts call it: validation data given to `fit` only."""
    fit_arguments.setdefault("validation_data", (digits.x_val, digits.y_val))
    return model.fit(
        digits.x,
        digits.y,
        batch_size=128,
        epochs=epochs,
        verbose=0,
        callbacks=[callback],
        **fit_arguments,
    )


def history_with(recorded, key):
    """The history rows of a finished run that hold `key`, a media value read as a dict.

    The run's log keeps a media value's fields as nested keys (`examples/count`).
    """
    rows = []
    for row in recorded.history:
        fields = {k[len(key) + 1 :]: v for k, v in row.items() if k.startswith(f"{key}/")}
        if key in row or fields:
            rows.append({**row, key: row.get(key, fields)})
    return rows


def named_mlp() -> keras.Model:
    """The digits MLP with the layer names of wandb's test model (`dense`, `dense_1`)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(16, activation="relu", name="dense"),
            keras.layers.Dense(10, activation="softmax", name="dense_1"),
        ],
        name="sequential",
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


# Issue 5: every argument of wandb 0.16 is accepted, with its meaning.


def test_data_type_image_logs_captioned_examples_like_wandb(
    legacy_mode, offline_run, run_file, digits, make_model
):
    from wandb.keras import WandbCallback

    with pytest.warns(FutureWarning, match="input_type"):
        callback = WandbCallback(data_type="image", predictions=10, labels=DIGIT_NAMES)
    old_script_fit(make_model(), digits, callback)

    assert callback.input_type == "image"
    (row,) = history_with(run_file(offline_run), "examples")
    # wandb's test_keras_image_multiclass_captions: 10 images, captioned with the labels.
    assert row["examples"]["_type"] == "images/separated"
    assert row["examples"]["count"] == 10
    assert len(row["examples"]["captions"]) == 10
    assert set(row["examples"]["captions"]) <= set(DIGIT_NAMES)


def test_every_argument_of_wandb_0_16_is_a_parameter():
    from ktsweep.callbacks import WandbCallback

    parameters = inspect.signature(WandbCallback).parameters
    assert [name for name in WANDB_0_16_PARAMETERS if name not in parameters] == []


def test_every_argument_of_wandb_0_16_at_its_default_trains(spy, digits, make_model):
    from ktsweep.callbacks import WandbCallback

    defaults = {
        "monitor": "val_loss",
        "verbose": 0,
        "mode": "auto",
        "save_weights_only": False,
        "log_weights": False,
        "log_gradients": False,
        "save_model": True,
        "training_data": None,
        "validation_data": None,
        "labels": [],
        "predictions": 36,
        "generator": None,
        "input_type": None,
        "output_type": None,
        "log_evaluation": False,
        "validation_steps": None,
        "class_colors": None,
        "log_batch_frequency": None,
        "log_best_prefix": "best_",
        "save_graph": True,
        "validation_indexes": None,
        "validation_row_processor": None,
        "prediction_row_processor": None,
        "infer_missing_processors": True,
        "log_evaluation_frequency": 0,
        "compute_flops": False,
    }
    assert set(defaults) | {"data_type"} == set(WANDB_0_16_PARAMETERS)
    old_script_fit(make_model(), digits, WandbCallback(**defaults))

    assert [row["epoch"] for row in spy.rows_with("epoch")] == [0]


def test_arguments_wandb_ignored_warn_and_are_ignored(spy, digits, make_model):
    from ktsweep.callbacks import WandbCallback

    with pytest.warns(UserWarning, match="ignores the argument `log_confusion_matrix`"):
        callback = WandbCallback(save_model=False, log_confusion_matrix=True)
    old_script_fit(make_model(), digits, callback)

    assert [row["epoch"] for row in spy.rows_with("epoch")] == [0]


def test_unknown_mode_warns_and_falls_back_to_auto_like_wandb(offline_run):
    from ktsweep.callbacks import WandbCallback

    with pytest.warns(UserWarning, match="'auto'"):
        callback = WandbCallback(monitor="val_accuracy", mode="best")

    assert callback.mode == "auto"


def test_predictions_are_capped_at_100_like_wandb(offline_run, digits):
    from ktsweep.callbacks import WandbCallback

    callback = WandbCallback(
        validation_data=(digits.x_val, digits.y_val), input_type="image", predictions=500
    )
    assert callback.predictions == 100


def test_a_generator_given_as_validation_data_supplies_examples(spy, digits, make_model):
    from ktsweep.callbacks import WandbCallback

    def batches():
        while True:
            yield digits.x_val[:4], digits.y_val[:4]

    callback = WandbCallback(validation_data=batches(), input_type="image", predictions=8)
    old_script_fit(make_model(), digits, callback)

    (row,) = spy.rows_with("examples")
    assert len(row["examples"]) == 8


def test_row_processors_add_columns_to_the_evaluation_table(spy, digits, make_model):
    from ktsweep.callbacks import WandbCallback

    callback = WandbCallback(
        validation_data=(digits.x_val, digits.y_val),
        log_evaluation=True,
        predictions=5,
        save_model=False,
        validation_row_processor=lambda index, row: {"digit": int(row["target"])},
        prediction_row_processor=lambda index, row: {"guess": int(np.argmax(row["output"]))},
    )
    model = make_model()
    old_script_fit(model, digits, callback)

    (row,) = spy.rows_with("evaluation")
    table = row["evaluation"]
    assert table.columns == ["input", "target", "digit", "output", "guess"]
    assert table.get_column("digit") == digits.y_val[:5].tolist()
    guesses = np.argmax(model.predict(digits.x_val[:5], verbose=0), axis=-1)
    assert table.get_column("guess") == guesses.tolist()


def test_validation_indexes_link_predictions_to_the_rows_of_a_logged_table(
    spy, offline_run, digits, make_model
):
    from ktsweep.callbacks import WandbCallback

    data_table = wandb.Table(columns=["label"], data=[[int(y)] for y in digits.y_val[:6]])
    offline_run.log({"validation_data": data_table})
    callback = WandbCallback(
        validation_data=(digits.x_val, digits.y_val),
        log_evaluation=True,
        validation_indexes=data_table.get_index(),
        save_model=False,
    )
    old_script_fit(make_model(), digits, callback)

    (row,) = spy.rows_with("evaluation")
    assert row["evaluation"].columns == ["val_row", "output"]
    assert [int(index) for index in row["evaluation"].get_column("val_row")] == list(range(6))


def test_infer_missing_processors_false_logs_raw_values(spy, digits, make_model):
    from ktsweep.callbacks import WandbCallback

    callback = WandbCallback(
        validation_data=(digits.x_val, digits.y_val),
        log_evaluation=True,
        predictions=3,
        infer_missing_processors=False,
        save_model=False,
    )
    old_script_fit(make_model(), digits, callback)

    (row,) = spy.rows_with("evaluation")
    outputs = row["evaluation"].get_column("output")
    assert [len(output) for output in outputs] == [10, 10, 10]


# Issue 6: in legacy mode the `validation_data` of `fit` is found.


def test_validation_data_given_only_to_fit_feeds_examples_and_evaluation(
    legacy_mode, offline_run, run_file, digits, make_model
):
    from wandb.keras import WandbCallback

    callback = WandbCallback(input_type="image", log_evaluation=True, save_model=False)
    old_script_fit(make_model(), digits, callback, epochs=2)

    recorded = run_file(offline_run)
    examples = history_with(recorded, "examples")
    # wandb's test_keras_image_binary: `predictions` (36) examples every epoch.
    assert [row["examples"]["count"] for row in examples] == [36, 36]
    (evaluation,) = history_with(recorded, "evaluation")
    assert evaluation["evaluation"]["_type"] == "table-file"
    assert evaluation["evaluation"]["nrows"] == 36


def test_validation_data_with_sample_weights_given_to_fit_is_found(
    legacy_mode, spy, digits, make_model
):
    from wandb.keras import WandbCallback

    callback = WandbCallback(input_type="image", predictions=4, save_model=False)
    weights = np.ones(len(digits.y_val), dtype="float32")
    old_script_fit(
        make_model(), digits, callback, validation_data=(digits.x_val, digits.y_val, weights)
    )

    (row,) = spy.rows_with("examples")
    assert len(row["examples"]) == 4


def test_the_validation_data_of_fit_is_lent_for_the_length_of_the_call(
    legacy_mode, spy, digits, make_model
):
    from wandb.keras import WandbCallback

    callback = WandbCallback(input_type="image", save_model=False)
    old_script_fit(make_model(), digits, callback)

    assert callback.fit_validation_data is None
    with pytest.warns(UserWarning, match="no validation data"):
        old_script_fit(make_model(), digits, callback, validation_data=None)
    assert len(spy.rows_with("examples")) == 1


def test_without_any_validation_data_legacy_mode_warns_and_trains_like_wandb(
    legacy_mode, spy, digits, make_model
):
    from wandb.keras import WandbCallback

    callback = WandbCallback(input_type="image", log_evaluation=True, save_model=False)
    with pytest.warns(UserWarning, match="no validation data"):
        old_script_fit(make_model(), digits, callback, validation_data=None)

    assert spy.rows_with("epoch") and not spy.rows_with("examples")
    assert not spy.rows_with("evaluation")


def test_disabling_legacy_mode_gives_back_keras_own_fit(digits):
    fit_before = keras.Model.fit
    ktsweep.callbacks.legacy.enable()
    ktsweep.callbacks.legacy.enable()
    assert keras.Model.fit is not fit_before
    ktsweep.callbacks.legacy.disable()

    assert keras.Model.fit is fit_before
    assert "fit" not in keras.Model.__dict__


# Issue 7: gradient histograms carry wandb's (tf.keras) names.


def test_gradient_histograms_have_the_names_wandb_logged(
    legacy_mode, offline_run, run_file, digits
):
    from wandb.keras import WandbCallback

    with pytest.warns(FutureWarning, match="input_type"):  # wandb's test passes `data_type`
        callback = WandbCallback(
            data_type="image", log_gradients=True, training_data=(digits.x[:64], digits.y[:64])
        )
    old_script_fit(named_mlp(), digits, callback)

    recorded = run_file(offline_run)
    # wandb's test_keras_log_gradients asserts these two names.
    (kernel,) = history_with(recorded, "gradients/dense/kernel.gradient")
    assert kernel["gradients/dense/kernel.gradient"]["_type"] == "histogram"
    (bias,) = history_with(recorded, "gradients/dense/bias.gradient")
    assert bias["gradients/dense/bias.gradient"]["_type"] == "histogram"
    gradients = {key.removesuffix("/_type") for key in kernel if key.startswith("gradients/")}
    gradients = {key for key in gradients if key.endswith(".gradient")}
    assert gradients == {
        "gradients/dense/kernel.gradient",
        "gradients/dense/bias.gradient",
        "gradients/dense_1/kernel.gradient",
        "gradients/dense_1/bias.gradient",
    }


def test_gradients_of_a_nested_model_are_named_from_their_layer(spy, digits):
    from ktsweep.callbacks import WandbCallback

    keras.utils.set_random_seed(0)
    head = keras.Sequential([keras.Input((16,)), keras.layers.Dense(10, "softmax", name="head")])
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, name="body"), head])
    model.compile("adam", "sparse_categorical_crossentropy")
    callback = WandbCallback(
        log_gradients=True, training_data=(digits.x[:64], digits.y[:64]), save_model=False
    )
    old_script_fit(model, digits, callback)

    (row,) = spy.rows_with("epoch")
    assert {key for key in row if key.startswith("gradients/")} == {
        "gradients/body/kernel.gradient",
        "gradients/body/bias.gradient",
        "gradients/head/kernel.gradient",
        "gradients/head/bias.gradient",
    }
