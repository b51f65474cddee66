"""`distribute` on the patterns of the keras-io Keras Tuner guides, next to plain Keras Tuner.

Each test runs the same tiny search twice, with plain Keras Tuner and through `distribute` (a
real local Ray, real Keras fits, W&B offline), and compares what the user gets: trial outcomes,
the tuner's folder, what is printed. Models are small MLPs on sklearn's digits.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import keras
import keras_tuner as kt
import numpy as np
import pytest
import ray
import tensorflow as tf
from keras_tuner.src.engine.trial import TrialStatus
from sklearn.datasets import load_digits
from wandb.proto import wandb_internal_pb2

from ktsweep.worker import distribute
from tests.callbacks.conftest import _key, _read_finished_log

# Workers unpickle this module's models by value: it is not importable there.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.usefixtures("local_ray")


def digits():
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    return (x[:1400], y[:1400]), (x[1400:], y[1400:])


(X, Y), VALIDATION = digits()


def build_mlp(hp):
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(hp.Int("units", 8, 32, step=8), activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(hp.Float("learning_rate", 1e-3, 1e-2, sampling="log")),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def trials_of(tuner):
    return sorted(tuner.oracle.trials.values(), key=lambda trial: trial.trial_id)


def wandb_offline(tmp_path):
    return {"project": "public-scripts", "mode": "offline", "dir": str(tmp_path / "wandb")}


def logged_keys(path) -> set[str]:
    """The history keys an offline run's transaction log holds."""
    keys = set()
    for payload in _read_finished_log(str(path)):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        if record.WhichOneof("record_type") == "history":
            keys |= {_key(item) for item in record.history.item}
    return keys


# -- 1. custom_tuner.py: a HyperModel.fit with a training loop of its own ----------------------


class CustomLoopHyperModel(kt.HyperModel):
    """As keras-io's custom_tuner.py: its own loop, which calls only `set_model` and
    `on_epoch_end` of the callbacks, and returns the best epoch's loss."""

    def build(self, hp):
        inputs = keras.Input((64,))
        hidden = keras.layers.Dense(hp.Int("units", 8, 32, step=8), activation="relu")(inputs)
        return keras.Model(inputs, keras.layers.Dense(10)(hidden))

    def fit(self, hp, model, x, y, validation_data, callbacks=None, **kwargs):
        batch_size = hp.Int("batch_size", 64, 128, step=64)
        train_ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
        val_ds = tf.data.Dataset.from_tensor_slices(validation_data).batch(batch_size)
        optimizer = keras.optimizers.Adam(1e-2)
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        epoch_loss_metric = keras.metrics.Mean()

        @tf.function
        def run_train_step(images, labels):
            with tf.GradientTape() as tape:
                loss = loss_fn(labels, model(images))
            gradients = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))

        @tf.function
        def run_val_step(images, labels):
            epoch_loss_metric.update_state(loss_fn(labels, model(images)))

        for callback in callbacks:
            callback.set_model(model)
        best_epoch_loss = float("inf")
        for epoch in range(2):
            for images, labels in train_ds:
                run_train_step(images, labels)
            for images, labels in val_ds:
                run_val_step(images, labels)
            epoch_loss = float(epoch_loss_metric.result().numpy())
            for callback in callbacks:
                callback.on_epoch_end(epoch, logs={"my_metric": epoch_loss})
            epoch_loss_metric.reset_state()
            best_epoch_loss = min(best_epoch_loss, epoch_loss)
        return best_epoch_loss


def test_a_hypermodel_fit_with_its_own_training_loop_completes_as_in_keras_tuner(tmp_path):
    def search(directory, **distribute_kwargs):
        tuner = kt.RandomSearch(
            CustomLoopHyperModel(),
            objective=kt.Objective("my_metric", "min"),
            max_trials=2,
            seed=5,
            directory=str(directory),
            project_name="custom_training",
        )
        if distribute_kwargs:
            distribute(tuner, **distribute_kwargs)
        tuner.search(X, Y, validation_data=VALIDATION, verbose=0)
        return tuner

    plain = search(tmp_path / "plain")
    distributed = search(
        tmp_path / "distributed",
        parallel_trials=2,
        wandb=wandb_offline(tmp_path),
        checkpoint_every_s=0,
    )

    assert [t.status for t in trials_of(plain)] == [TrialStatus.COMPLETED] * 2
    assert [t.status for t in trials_of(distributed)] == [TrialStatus.COMPLETED] * 2, [
        t.message for t in trials_of(distributed)
    ]
    assert [t.hyperparameters.values for t in trials_of(distributed)] == [
        t.hyperparameters.values for t in trials_of(plain)
    ]
    # The best epoch's weights were saved, as Keras Tuner saves them: the best model loads.
    best = distributed.oracle.get_best_trials(1)[0]
    model = distributed.get_best_models(1)[0]
    # Scored as the loop scores an epoch: the mean of its validation batches' mean losses.
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    batches = tf.data.Dataset.from_tensor_slices(VALIDATION).batch(
        best.hyperparameters.get("batch_size")
    )
    loss = np.mean([float(loss_fn(labels, model(images))) for images, labels in batches])
    assert loss == pytest.approx(best.score, rel=1e-4)
    runs = list((tmp_path / "wandb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2
    # The metrics logger ktsweep injects logged the loop's epochs, though the model has no
    # optimizer and the loop never called on_train_begin.
    for run in runs:
        (log,) = run.glob("run-*.wandb")
        assert "epoch/my_metric" in logged_keys(log), run


# -- 2. distributed_tuning.py: a tuner built with distribution_strategy= -----------------------


class StrategyReportingHyperModel(kt.HyperModel):
    """Builds the MLP and reports which strategy the model was built under."""

    def build(self, hp):
        return build_mlp(hp)

    def fit(self, hp, model, *args, **kwargs):
        history = model.fit(*args, **kwargs)
        strategy = model.distribute_strategy
        return {
            "val_accuracy": max(history.history["val_accuracy"]),
            "mirrored": float(type(strategy) is tf.distribute.MirroredStrategy),
            "replicas": float(strategy.num_replicas_in_sync),
        }


def test_a_tuner_with_a_mirrored_strategy_trains_under_one_on_each_worker(tmp_path):
    def search(directory, **distribute_kwargs):
        tuner = kt.RandomSearch(
            StrategyReportingHyperModel(),
            objective="val_accuracy",
            max_trials=2,
            seed=7,
            distribution_strategy=tf.distribute.MirroredStrategy(),
            directory=str(directory),
            project_name="distributed_tuning",
        )
        if distribute_kwargs:
            distribute(tuner, **distribute_kwargs)
        tuner.search(X, Y, epochs=1, validation_data=VALIDATION, verbose=0)
        return tuner

    plain = search(tmp_path / "plain")
    distributed = search(tmp_path / "distributed", parallel_trials=2)

    for tuner in (plain, distributed):
        trials = trials_of(tuner)
        assert [t.status for t in trials] == [TrialStatus.COMPLETED] * 2, [
            t.message for t in trials
        ]
        assert [t.metrics.get_last_value("mirrored") for t in trials] == [1.0, 1.0]
        assert [t.metrics.get_last_value("replicas") for t in trials] == [1.0, 1.0]
    assert isinstance(distributed.get_best_models(1)[0], keras.Model)


class TunedStrategy(tf.distribute.OneDeviceStrategy):
    """A strategy class of the user's own: a worker can't know how to build it."""


def test_a_strategy_no_worker_can_rebuild_is_refused_with_what_to_change(tmp_path):
    tuner = kt.RandomSearch(
        build_mlp,
        objective="val_accuracy",
        max_trials=1,
        distribution_strategy=TunedStrategy("/cpu:0"),
        directory=str(tmp_path),
    )
    with pytest.raises(ValueError, match=r"TunedStrategy.*MirroredStrategy\(\)"):
        distribute(tuner)


# -- 3. What trials print ----------------------------------------------------------------------


def build_that_prints_or_explodes(hp):
    units = hp.Choice("units", [16])
    hp.Fixed("learning_rate", 0.01)
    if hp.Boolean("explode"):
        raise ValueError("this configuration cannot be built")
    print(f"building a model of {units} units")
    return build_mlp(hp)


def grid_search(directory, verbose, **distribute_kwargs):
    tuner = kt.GridSearch(
        build_that_prints_or_explodes,
        objective="val_accuracy",
        directory=str(directory),
        project_name="printing",
    )
    if distribute_kwargs:
        distribute(tuner, **distribute_kwargs)
    tuner.search(X, Y, epochs=2, validation_data=VALIDATION, verbose=verbose)
    return tuner


def test_trials_print_to_the_driver_under_their_trial_id_as_in_keras_tuner(tmp_path, capsys):
    capsys.readouterr()
    plain_tuner = grid_search(tmp_path / "plain", verbose=1)
    plain = capsys.readouterr()
    distributed_tuner = grid_search(tmp_path / "distributed", verbose=1, parallel_trials=2)
    distributed = capsys.readouterr()

    # Keras Tuner's own lines, once per trial, as in plain Keras Tuner.
    # With IPython installed, Keras Tuner clears the terminal's line (`\x1b[2K\r`) before them.
    plain_text, distributed_text = (re.sub(r"\x1b\[2K\r?", "", c.out) for c in (plain, distributed))
    for line in (r"^Trial \d+ Complete", r"^Best val_accuracy So Far: "):
        assert len(re.findall(line, plain_text, re.M)) == 2
        assert len(re.findall(line, distributed_text, re.M)) == 2
    # The trial's own output (the user's print, fit's progress), prefixed by its trial id.
    by_value = {t.hyperparameters["explode"]: t for t in trials_of(distributed_tuner)}
    built, exploded = by_value[False].trial_id, by_value[True].trial_id
    for expected in ("building a model of 16 units", "Epoch 2/2", "val_accuracy: "):
        assert expected in plain.out
        assert re.search(rf"^\[trial {built}\] .*{re.escape(expected)}", distributed.out, re.M)
    # The failed trial's traceback, on stderr as Keras Tuner prints it.
    for captured, tuner in ((plain, plain_tuner), (distributed, distributed_tuner)):
        failed = [t for t in trials_of(tuner) if t.status != TrialStatus.COMPLETED]
        assert len(failed) == 1
        assert "Traceback (most recent call last)" in captured.err
        assert "ValueError: this configuration cannot be built" in captured.err
    assert f"[trial {exploded}]" not in distributed.out  # it printed nothing of its own


def test_verbose_0_keeps_trial_output_quiet_but_still_shows_tracebacks(tmp_path, capsys):
    capsys.readouterr()
    grid_search(tmp_path, verbose=0, parallel_trials=2)
    captured = capsys.readouterr()
    assert "[trial " not in captured.out
    assert "Trial 1 Complete" not in captured.out  # Keras Tuner's Display is quiet too
    assert "ValueError: this configuration cannot be built" in captured.err


# -- 4. "Tailor the search space": what the tuner's folder keeps -------------------------------


def tailored_search(directory, **distribute_kwargs):
    hp = kt.HyperParameters()
    hp.Float("learning_rate", 1e-3, 1e-2, sampling="log")
    tuner = kt.RandomSearch(
        build_mlp,
        hyperparameters=hp,
        tune_new_entries=False,  # units stays at its default
        objective="val_accuracy",
        max_trials=2,
        seed=11,
        overwrite=True,
        directory=str(directory),
        project_name="search_a_few",
    )
    if distribute_kwargs:
        distribute(tuner, **distribute_kwargs)
    tuner.search(X, Y, epochs=2, validation_data=VALIDATION, verbose=0)
    return tuner


def folder_files(root: Path) -> dict[str, int]:
    return {
        str(path.relative_to(root)): path.stat().st_size
        for path in root.rglob("*")
        if path.is_file()
    }


def test_trial_folders_hold_what_keras_tuner_leaves_once_trials_end(tmp_path):
    plain = folder_files(Path(tailored_search(tmp_path / "plain").project_dir))
    distributed_tuner = tailored_search(
        tmp_path / "distributed",
        parallel_trials=2,
        wandb=wandb_offline(tmp_path),
        checkpoint_every_s=0,  # a resumable checkpoint at every epoch, all deleted at the end
    )
    distributed = folder_files(Path(distributed_tuner.project_dir))

    assert all(t.status == TrialStatus.COMPLETED for t in trials_of(distributed_tuner))
    # Keras Tuner's files, plus a note of which process ran each trial.
    extra = set(distributed) - set(plain)
    assert {Path(name).name for name in extra} <= {"worker.json"}, sorted(extra)
    assert set(plain) <= set(distributed)
    assert sum(distributed.values()) <= sum(plain.values()) * 1.05 + 1024 * len(extra)


def test_keep_resume_state_keeps_the_latest_epoch_checkpoint(tmp_path):
    tuner = tailored_search(tmp_path, parallel_trials=1, keep_resume_state=True)
    for trial in trials_of(tuner):
        trial_dir = Path(tuner.get_trial_dir(trial.trial_id))
        assert (trial_dir / "last.keras").is_file() and (trial_dir / "last.json").is_file()
    assert np.isfinite(trials_of(tuner)[0].score)
