"""Specification of `ModelCheckpoint`."""

from __future__ import annotations

import copy
import os

import keras
import numpy as np
import pytest
import wandb

from ktsweep.callbacks import ModelCheckpoint, WandbModelCheckpoint

BATCH_SIZE = 128


class ScriptedScore(keras.callbacks.Callback):
    """Puts a scripted `score` into each epoch's logs, for checkpoints to monitor."""

    def __init__(self, scores):
        super().__init__()
        self.scores = scores

    def on_epoch_end(self, epoch, logs=None):
        logs["score"] = self.scores[epoch]


def fit(model, digits, callbacks, epochs=2, **kwargs):
    return model.fit(
        digits.x,
        digits.y,
        validation_data=(digits.x_val, digits.y_val),
        batch_size=BATCH_SIZE,
        epochs=epochs,
        verbose=0,
        callbacks=callbacks,
        **kwargs,
    )


def artifact_files(artifact) -> list[str]:
    return sorted(artifact.manifest.entries)


def test_constructing_without_run_says_to_call_wandb_init(wandb_env, tmp_path):
    with pytest.raises(wandb.Error, match=r"wandb\.init\(\)"):
        ModelCheckpoint(tmp_path / "models")


def test_seed_name_is_an_alias():
    assert WandbModelCheckpoint is ModelCheckpoint


def test_folder_path_receives_a_keras_file_per_epoch(offline_run, digits, make_model, tmp_path):
    checkpoint = ModelCheckpoint(tmp_path / "models")
    fit(make_model(), digits, [checkpoint])

    assert sorted(os.listdir(tmp_path / "models")) == ["model-epoch01.keras", "model-epoch02.keras"]
    assert checkpoint.last_saved_path == str(tmp_path / "models" / "model-epoch02.keras")


def test_bare_folder_name_as_in_the_seed_is_relative_to_cwd(offline_run, digits, make_model):
    checkpoint = ModelCheckpoint("models")
    fit(make_model(), digits, [checkpoint], epochs=1)

    assert os.path.isfile(os.path.join("models", "model-epoch01.keras"))


def test_weights_only_folder_receives_weights_files(offline_run, digits, make_model, tmp_path):
    checkpoint = ModelCheckpoint(tmp_path / "models", save_weights_only=True)
    fit(make_model(), digits, [checkpoint], epochs=1)

    assert os.listdir(tmp_path / "models") == ["model-epoch01.weights.h5"]


def test_every_save_is_a_model_artifact_with_epoch_aliases(
    spy, run_file, offline_run, digits, make_model, tmp_path
):
    fit(make_model(), digits, [ModelCheckpoint(tmp_path / "models")])

    logged = spy.logged_artifacts
    assert [aliases for _, aliases in logged] == [
        ["latest", "epoch_0", "best"],
        ["latest", "epoch_1", "best"],
    ]
    assert all(a.type == "model" and a.name == f"run_{offline_run.id}_model" for a, _ in logged)
    assert [artifact_files(a) for a, _ in logged] == [
        ["model-epoch01.keras"],
        ["model-epoch02.keras"],
    ]
    recorded = run_file(offline_run)
    assert [set(a.aliases) for a in recorded.artifacts_of_type("model")] == [
        {"latest", "epoch_0", "best"},
        {"latest", "epoch_1", "best"},
    ]


def test_best_alias_marks_only_improving_saves(spy, offline_run, digits, make_model, tmp_path):
    checkpoint = ModelCheckpoint(tmp_path / "models", monitor="score", mode="max")
    fit(make_model(), digits, [ScriptedScore([0.5, 0.9, 0.7]), checkpoint], epochs=3)

    assert [aliases for _, aliases in spy.logged_artifacts] == [
        ["latest", "epoch_0", "best"],
        ["latest", "epoch_1", "best"],
        ["latest", "epoch_2"],
    ]
    assert checkpoint.best_saved_path == str(tmp_path / "models" / "model-epoch02.keras")
    assert checkpoint.last_saved_path == str(tmp_path / "models" / "model-epoch03.keras")


def test_checkpoint_skips_epoch_without_crash(spy, offline_run, digits, make_model, tmp_path):
    checkpoint = ModelCheckpoint(
        tmp_path / "models", monitor="score", mode="max", save_best_only=True
    )
    fit(make_model(), digits, [ScriptedScore([0.5, 0.4, 0.9]), checkpoint], epochs=3)

    assert sorted(os.listdir(tmp_path / "models")) == ["model-epoch01.keras", "model-epoch03.keras"]
    assert [aliases for _, aliases in spy.logged_artifacts] == [
        ["latest", "epoch_0", "best"],
        ["latest", "epoch_2", "best"],
    ]
    assert checkpoint.best_saved_path == checkpoint.last_saved_path


def test_initial_value_threshold_must_be_beaten(spy, offline_run, digits, make_model, tmp_path):
    checkpoint = ModelCheckpoint(
        tmp_path / "models",
        monitor="score",
        mode="max",
        save_best_only=True,
        initial_value_threshold=0.8,
    )
    fit(make_model(), digits, [ScriptedScore([0.5, 0.9]), checkpoint])

    assert os.listdir(tmp_path / "models") == ["model-epoch02.keras"]
    assert len(spy.logged_artifacts) == 1


def test_nothing_saved_leaves_paths_none(offline_run, digits, make_model, tmp_path):
    checkpoint = ModelCheckpoint(
        tmp_path / "models",
        monitor="score",
        mode="max",
        save_best_only=True,
        initial_value_threshold=1.0,
    )
    fit(make_model(), digits, [ScriptedScore([0.5, 0.9]), checkpoint])

    assert checkpoint.last_saved_path is None
    assert checkpoint.best_saved_path is None


def test_batch_saves_use_epoch_and_batch_aliases(spy, offline_run, digits, make_model, tmp_path):
    checkpoint = ModelCheckpoint(tmp_path / "models", monitor="loss", save_freq=5)
    fit(make_model(), digits, [checkpoint], epochs=1)  # 11 batches: saves after 5 and 10

    assert [aliases[:2] for _, aliases in spy.logged_artifacts] == [
        ["latest", "epoch_0_batch_4"],
        ["latest", "epoch_0_batch_9"],
    ]
    assert sorted(os.listdir(tmp_path / "models")) == [
        "model-epoch01-batch0005.keras",
        "model-epoch01-batch0010.keras",
    ]


def test_save_freq_of_n_epochs_of_steps_saves_every_n_epochs(
    spy, offline_run, digits, make_model, tmp_path
):
    steps_per_epoch = -(-len(digits.x) // BATCH_SIZE)
    checkpoint = ModelCheckpoint(tmp_path / "models", monitor="loss", save_freq=steps_per_epoch * 2)
    fit(make_model(), digits, [checkpoint], epochs=4)

    last_batch = steps_per_epoch - 1
    assert [aliases[:2] for _, aliases in spy.logged_artifacts] == [
        ["latest", f"epoch_1_batch_{last_batch}"],
        ["latest", f"epoch_3_batch_{last_batch}"],
    ]


def test_checkpoint_resumes_training(offline_run, digits, make_model, tmp_path):
    model = make_model()
    checkpoint = ModelCheckpoint(tmp_path / "models")
    fit(model, digits, [checkpoint])

    restored = keras.models.load_model(checkpoint.last_saved_path)
    for saved, loaded in zip(model.get_weights(), restored.get_weights(), strict=True):
        np.testing.assert_allclose(saved, loaded)
    assert int(restored.optimizer.iterations) == int(model.optimizer.iterations)
    history = fit(restored, digits, [checkpoint], epochs=3, initial_epoch=2)
    assert len(history.history["loss"]) == 1
    assert checkpoint.last_saved_path.endswith("model-epoch03.keras")


def test_weights_checkpoint_resumes_training(offline_run, digits, make_model, tmp_path):
    model = make_model()
    checkpoint = ModelCheckpoint(tmp_path / "ckpt.weights.h5", save_weights_only=True)
    fit(model, digits, [checkpoint], epochs=1)

    fresh = make_model()
    fresh.optimizer.build(fresh.trainable_variables)
    fresh.load_weights(checkpoint.last_saved_path)
    for saved, loaded in zip(model.get_weights(), fresh.get_weights(), strict=True):
        np.testing.assert_allclose(saved, loaded)
    assert int(fresh.optimizer.iterations) == int(model.optimizer.iterations)


def test_upload_every_n_saves_still_logs_the_last_save(
    spy, offline_run, digits, make_model, tmp_path
):
    checkpoint = ModelCheckpoint(tmp_path / "models", upload_every_n_saves=2)
    fit(make_model(), digits, [checkpoint], epochs=3)

    assert [aliases[1] for _, aliases in spy.logged_artifacts] == ["epoch_1", "epoch_2"]
    assert len(os.listdir(tmp_path / "models")) == 3


def test_keep_last_deletes_older_files_but_keeps_the_best(
    offline_run, digits, make_model, tmp_path
):
    checkpoint = ModelCheckpoint(tmp_path / "models", monitor="score", mode="max", keep_last=2)
    fit(make_model(), digits, [ScriptedScore([0.9, 0.1, 0.2, 0.3]), checkpoint], epochs=4)

    assert sorted(os.listdir(tmp_path / "models")) == [
        "model-epoch01.keras",
        "model-epoch03.keras",
        "model-epoch04.keras",
    ]
    assert checkpoint.best_saved_path.endswith("model-epoch01.keras")


def test_templated_file_path_is_kept(spy, offline_run, digits, make_model, tmp_path):
    checkpoint = ModelCheckpoint(str(tmp_path / "ckpt-{epoch:02d}-{val_loss:.2f}.keras"))
    history = fit(make_model(), digits, [checkpoint], epochs=1)

    expected = f"ckpt-01-{history.history['val_loss'][0]:.2f}.keras"
    assert os.path.basename(checkpoint.last_saved_path) == expected


@pytest.mark.parametrize(
    ("filepath", "kwargs", "message"),
    [
        ("model.tf", {}, r"'\.keras'"),
        ("model.pb", {}, r"'\.keras'"),
        ("ckpt.keras", {"save_weights_only": True}, r"'\.weights\.h5'"),
        ("ckpt.weights.h5", {}, "save_weights_only=True"),
        ("model-{epoch:02d}", {}, "extension"),
    ],
)
def test_rejects_path_keras_3_cannot_write(offline_run, tmp_path, filepath, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelCheckpoint(str(tmp_path / filepath), **kwargs)


def test_rejects_tensorflow_save_options(offline_run, tmp_path):
    with pytest.raises(ValueError, match="Keras 3"):
        ModelCheckpoint(tmp_path / "models", options=object())


@pytest.mark.parametrize("kwargs", [{"upload_every_n_saves": 0}, {"keep_last": 0}])
def test_rejects_non_positive_counts(offline_run, tmp_path, kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        ModelCheckpoint(tmp_path / "models", **kwargs)


def test_checkpoint_can_be_deep_copied_for_keras_tuner_trials(
    spy, offline_run, digits, make_model, tmp_path
):
    checkpoint = ModelCheckpoint(tmp_path / "models")
    fit(make_model(), digits, [copy.deepcopy(checkpoint)], epochs=1)
    assert len(spy.logged_artifacts) == 1


def test_works_in_disabled_mode(wandb_env, digits, make_model, tmp_path):
    wandb.init(mode="disabled")
    checkpoint = ModelCheckpoint(tmp_path / "models", keep_last=1)
    fit(make_model(), digits, [checkpoint])
    assert os.listdir(tmp_path / "models") == ["model-epoch02.keras"]
