"""Specification of the legacy `WandbCallback` and of legacy mode."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import wandb

import ktsweep.callbacks
import ktsweep.callbacks.legacy
from ktsweep.callbacks import WandbCallback

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def fit(model, digits, callbacks, epochs=2):
    return model.fit(
        digits.x,
        digits.y,
        validation_data=(digits.x_val, digits.y_val),
        batch_size=128,
        epochs=epochs,
        verbose=0,
        callbacks=callbacks,
    )


@pytest.fixture
def legacy_mode():
    ktsweep.callbacks.legacy.enable()
    yield
    ktsweep.callbacks.legacy.disable()


def test_constructing_without_run_says_to_call_wandb_init(wandb_env):
    with pytest.raises(wandb.Error, match=r"wandb\.init\(\)"):
        WandbCallback()


def test_logs_epoch_metrics_under_their_keras_names(spy, digits, make_model):
    history = fit(make_model(), digits, [WandbCallback(save_model=False)]).history

    rows = spy.rows_with("epoch")
    assert [row["epoch"] for row in rows] == [0, 1]
    assert [row["val_loss"] for row in rows] == pytest.approx(history["val_loss"])
    assert {"loss", "accuracy", "val_accuracy"} <= set(rows[0])


def test_best_monitor_goes_to_summary_and_best_model_is_saved(
    spy, run_file, offline_run, digits, make_model
):
    callback = WandbCallback(monitor="val_accuracy")
    history = fit(make_model(), digits, [callback]).history

    best = max(history["val_accuracy"])
    assert offline_run.summary["best_val_accuracy"] == pytest.approx(best)
    assert offline_run.summary["best_epoch"] == history["val_accuracy"].index(best)
    restored = keras.models.load_model(callback.filepath)
    assert os.path.basename(callback.filepath) == "model-best.keras"
    assert restored.count_params() == make_model().count_params()
    ((artifact, aliases),) = spy.logged_artifacts
    assert artifact.type == "model" and "best" in aliases
    assert len(run_file(offline_run).artifacts_of_type("model")) == 1


def test_save_weights_only_saves_a_weights_file(offline_run, digits, make_model):
    callback = WandbCallback(save_weights_only=True)
    fit(make_model(), digits, [callback], epochs=1)

    assert callback.filepath.endswith("model-best.weights.h5")
    restored = make_model()
    restored.optimizer.build(restored.trainable_variables)
    restored.load_weights(callback.filepath)


def test_log_weights_logs_a_histogram_per_layer(spy, digits, make_model):
    fit(make_model(), digits, [WandbCallback(log_weights=True, save_model=False)], epochs=1)

    (row,) = spy.rows_with("epoch")
    histograms = {k for k, v in row.items() if isinstance(v, wandb.Histogram)}
    assert len(histograms) == 4
    assert all(k.startswith("parameters/") for k in histograms)
    assert any(k.endswith(".bias") for k in histograms)


def test_log_gradients_logs_a_histogram_per_trainable_weight(spy, digits, make_model):
    callback = WandbCallback(
        log_gradients=True, training_data=(digits.x[:64], digits.y[:64]), save_model=False
    )
    model = make_model()
    fit(model, digits, [callback], epochs=1)

    (row,) = spy.rows_with("epoch")
    gradients = {k for k, v in row.items() if isinstance(v, wandb.Histogram)}
    assert gradients == {
        f"gradients/{layer.name}/{v.name}.gradient"
        for layer in model.layers
        for v in layer.trainable_variables
    }


def test_log_gradients_without_training_data_says_to_pass_it(offline_run):
    with pytest.raises(ValueError, match="training_data"):
        WandbCallback(log_gradients=True)


def test_log_batch_frequency_logs_batch_metrics(spy, digits, make_model):
    fit(make_model(), digits, [WandbCallback(log_batch_frequency=5, save_model=False)], epochs=1)

    assert [row["batch"] for row in spy.rows_with("batch")] == [0, 5, 10]


def test_image_classification_examples_are_captioned_with_labels(spy, digits, make_model):
    labels = [f"digit {i}" for i in range(10)]
    callback = WandbCallback(
        validation_data=(digits.x_val, digits.y_val),
        input_type="image",
        labels=labels,
        predictions=6,
        save_model=False,
    )
    fit(make_model(), digits, [callback], epochs=1)

    (row,) = spy.rows_with("examples")
    assert len(row["examples"]) == 6
    assert all(image._caption in labels for image in row["examples"])


def test_generator_with_validation_steps_supplies_examples(spy, digits, make_model):
    def batches():
        for start in range(0, len(digits.x_val), 4):
            yield digits.x_val[start : start + 4], digits.y_val[start : start + 4]

    callback = WandbCallback(
        generator=batches(), validation_steps=2, input_type="image", save_model=False
    )
    fit(make_model(), digits, [callback], epochs=1)

    (row,) = spy.rows_with("examples")
    assert len(row["examples"]) == 8


def test_log_evaluation_logs_a_table_at_the_end(spy, digits, make_model):
    callback = WandbCallback(
        validation_data=(digits.x_val, digits.y_val),
        log_evaluation=True,
        predictions=10,
        save_model=False,
    )
    fit(make_model(), digits, [callback], epochs=1)

    (row,) = spy.rows_with("evaluation")
    assert row["evaluation"].columns == ["input", "target", "output"]
    assert len(row["evaluation"].data) == 10


def test_examples_without_data_say_to_pass_validation_data(offline_run):
    with pytest.raises(ValueError, match="validation_data"):
        WandbCallback(input_type="image")


def test_compute_flops_warns_that_keras_3_has_no_flops_and_trains(spy, digits, make_model):
    with pytest.warns(UserWarning, match=r"compute_flops.*model\.summary"):
        callback = WandbCallback(compute_flops=True, save_model=False)
    fit(make_model(), digits, [callback], epochs=1)

    assert spy.rows_with("epoch")


def test_legacy_mode_makes_wandb_keras_import_ours(legacy_mode):
    from wandb.keras import (
        WandbCallback as LegacyCallback,
    )
    from wandb.keras import (
        WandbEvalCallback,
        WandbMetricsLogger,
        WandbModelCheckpoint,
    )

    assert LegacyCallback is ktsweep.callbacks.WandbCallback
    assert WandbMetricsLogger is ktsweep.callbacks.MetricsLogger
    assert WandbModelCheckpoint is ktsweep.callbacks.ModelCheckpoint
    assert WandbEvalCallback is ktsweep.callbacks.EvalCallback


def test_legacy_mode_can_be_disabled():
    ktsweep.callbacks.legacy.enable()
    ktsweep.callbacks.legacy.disable()
    assert not ktsweep.callbacks.legacy.is_enabled()
    with pytest.raises(ImportError):
        from wandb.keras import WandbCallback  # noqa: F401


def test_old_script_runs_unchanged_in_legacy_mode(tmp_path):
    script = tmp_path / "old_train.py"
    script.write_text(
        textwrap.dedent(
            """
            import numpy as np
            import keras
            import wandb
            from sklearn.datasets import load_digits
            from wandb.keras import WandbCallback

            x, y = load_digits(return_X_y=True)
            x = (x / 16.0).astype("float32")
            wandb.init(config={"bs": 12})
            model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10, "softmax")])
            model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
            model.fit(x[:1000], y[:1000], validation_data=(x[1000:], y[1000:]), epochs=1,
                      batch_size=128, verbose=0,
                      callbacks=[WandbCallback(data_type="image", labels=list("0123456789"))])
            wandb.finish()
            print("OLD SCRIPT OK")
            """
        )
    )
    runner = (
        "import ktsweep.callbacks.legacy, runpy, sys; ktsweep.callbacks.legacy.enable(); "
        "runpy.run_path(sys.argv[1], run_name='__main__')"
    )
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(tmp_path),
        "WANDB_SILENT": "true",
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", runner, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OLD SCRIPT OK" in result.stdout


def test_works_in_disabled_mode(wandb_env, digits, make_model):
    wandb.init(mode="disabled")
    callback = WandbCallback(log_weights=True)
    fit(make_model(), digits, [callback], epochs=1)
    assert os.path.exists(callback.filepath)
    assert np.isfinite(callback.best)
