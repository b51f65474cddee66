"""`distribute`: real Keras Tuner tuners on digits, trials on a real local Ray, W&B offline."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import keras
import keras_tuner as kt
import pytest
import ray
from keras_tuner.src.engine.trial import TrialStatus

from ktsweep.examples.digits import build_model, load_data
from ktsweep.worker import distribute
from ktsweep.worker.last_checkpoint import read_last_checkpoint, read_worker_info

# Workers unpickle this module's models and callbacks by value: it is not importable there.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.usefixtures("local_ray")
DATA = load_data()
DRIVER_PID = os.getpid()


def search(tuner, epochs=2, **kwargs):
    tuner.search(
        DATA["x"],
        DATA["y"],
        epochs=epochs,
        validation_data=DATA["validation_data"],
        verbose=0,
        **kwargs,
    )


def trials_of(tuner):
    return list(tuner.oracle.trials.values())


class PutSpy:
    """Records every `ray.put` and passes it through."""

    def __init__(self, monkeypatch):
        self.objects = []
        real_put = ray.put

        def put(value, *args, **kwargs):
            self.objects.append(value)
            return real_put(value, *args, **kwargs)

        monkeypatch.setattr(ray, "put", put)


@pytest.fixture(scope="module")
def random_search(tmp_path_factory):
    """A 4-trial RandomSearch run through distribute(parallel_trials=2), with W&B runs."""
    root = tmp_path_factory.mktemp("random")
    tuner = kt.RandomSearch(
        build_model,
        objective="val_accuracy",
        max_trials=4,
        seed=3,
        directory=str(root),
        project_name="digits",
    )
    distribute(tuner, parallel_trials=2, wandb={"project": "tests", "dir": str(root / "wandb")})
    with pytest.MonkeyPatch.context() as monkeypatch:
        tuner.put_spy = PutSpy(monkeypatch)
        search(tuner)
    return tuner, root


def test_random_search_runs_every_trial_on_two_workers_at_once(random_search):
    tuner, _ = random_search
    trials = trials_of(tuner)
    assert len(trials) == 4
    assert all(trial.status == TrialStatus.COMPLETED for trial in trials)
    pids = {read_worker_info(tuner.get_trial_dir(trial.trial_id))["pid"] for trial in trials}
    assert len(pids) == 2 and os.getpid() not in pids


def test_best_hyperparameters_and_models_come_back_as_in_keras_tuner(random_search):
    tuner, _ = random_search
    best = max(trials_of(tuner), key=lambda trial: trial.score)
    assert tuner.get_best_hyperparameters(1)[0].values == best.hyperparameters.values
    model = tuner.get_best_models(1)[0]
    _, accuracy = model.evaluate(*DATA["validation_data"], verbose=0)
    assert accuracy == pytest.approx(best.score, abs=1e-4)


def test_each_trial_logs_to_its_own_wandb_run(random_search):
    _, root = random_search
    run_dirs = sorted((root / "wandb" / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 4
    assert all(any(run_dir.glob("run-*.wandb")) for run_dir in run_dirs)


def test_overwrite_false_resumes_the_search_where_it_stopped(random_search):
    tuner, root = random_search
    resumed = kt.RandomSearch(
        build_model,
        objective="val_accuracy",
        max_trials=5,
        seed=3,
        directory=str(root),
        project_name="digits",
        overwrite=False,
    )
    distribute(resumed, parallel_trials=2)
    search(resumed)
    trials = trials_of(resumed)
    assert len(trials) == 5
    assert {t.trial_id for t in trials} >= {t.trial_id for t in trials_of(tuner)}


def test_training_data_goes_to_the_object_store_once(random_search):
    tuner, _ = random_search
    holding_data = [
        obj
        for obj in tuner.put_spy.objects
        if isinstance(obj, tuple) and any(arg is DATA["x"] for arg in obj[0])
    ]
    assert len(holding_data) == 1


@pytest.mark.parametrize("shared_directory", [None, False], ids=["shared", "not-shared"])
def test_hyperband_continuations_train_on_from_their_parents(tmp_path, shared_directory):
    tuner = kt.Hyperband(
        build_model,
        objective="val_accuracy",
        max_epochs=3,
        factor=3,
        seed=1,
        directory=str(tmp_path),
    )
    distribute(tuner, parallel_trials=2, shared_directory=shared_directory)
    search(tuner)
    trials = trials_of(tuner)
    continuations = [t for t in trials if "tuner/trial_id" in t.hyperparameters.values]
    assert continuations
    assert all(t.status == TrialStatus.COMPLETED for t in trials), [t.message for t in trials]
    for trial in continuations:
        assert trial.hyperparameters.values["tuner/initial_epoch"] > 0
    assert isinstance(tuner.get_best_models(1)[0], keras.Model)
    for trial in trials:
        trial_dir = Path(tuner.get_trial_dir(trial.trial_id))
        # Every trial's best-epoch checkpoint is in the tuner's folder on the driver...
        assert (trial_dir / "checkpoint.weights.h5").is_file()
        # ...written there by the worker, or, without a shared folder, sent back by it.
        assert (read_worker_info(trial_dir) is None) == (shared_directory is False)


@pytest.mark.parametrize("method", ["grid", "bayesian"])
def test_grid_and_bayesian_search_finish_all_their_trials(tmp_path, method):
    def build(hp):
        hp.Choice("units", [16, 32])
        hp.Fixed("dropout", 0.1)
        hp.Fixed("learning_rate", 0.01)
        return build_model(hp)

    if method == "grid":
        tuner = kt.GridSearch(build, objective="val_accuracy", directory=str(tmp_path))
    else:
        tuner = kt.BayesianOptimization(
            build_model,
            objective="val_accuracy",
            max_trials=3,
            num_initial_points=2,
            seed=2,
            directory=str(tmp_path),
        )
    distribute(tuner, parallel_trials=2)
    search(tuner, epochs=1)
    trials = trials_of(tuner)
    assert len(trials) == (2 if method == "grid" else 3)
    assert all(t.status == TrialStatus.COMPLETED and t.score is not None for t in trials)


class BlackBoxTuner(kt.RandomSearch):
    """A subclass whose run_trial trains nothing: it scores x directly."""

    def run_trial(self, trial, *args, **kwargs):
        x = trial.hyperparameters.Float("x", -2.0, 2.0)
        return {"score": (x - 0.5) ** 2}


class DigitsHyperModel(kt.HyperModel):
    """A HyperModel whose fit returns a dict with the objective."""

    def build(self, hp):
        return build_model(hp)

    def fit(self, hp, model, x, y, validation_data=None, **kwargs):
        model.fit(x, y, epochs=1, verbose=0)
        loss, accuracy = model.evaluate(*validation_data, verbose=0)
        return {"val_accuracy": accuracy, "extra": 1.0}


def test_a_tuner_subclass_overriding_run_trial_runs_unchanged(tmp_path):
    tuner = BlackBoxTuner(
        objective=kt.Objective("score", "min"), max_trials=4, seed=1, directory=str(tmp_path)
    )
    distribute(tuner, parallel_trials=2)
    tuner.search()
    best = tuner.get_best_hyperparameters(1)[0]
    scores = sorted(t.score for t in trials_of(tuner))
    assert len(scores) == 4
    assert (best["x"] - 0.5) ** 2 == pytest.approx(scores[0])


def test_a_hypermodel_fit_override_reports_its_metrics(tmp_path):
    tuner = kt.RandomSearch(
        DigitsHyperModel(),
        objective="val_accuracy",
        max_trials=2,
        seed=1,
        directory=str(tmp_path),
    )
    distribute(tuner, parallel_trials=2)
    search(tuner)
    for trial in trials_of(tuner):
        assert trial.status == TrialStatus.COMPLETED
        assert trial.metrics.get_last_value("extra") == 1.0


def build_that_explodes(hp):
    hp.Fixed("units", 16)
    hp.Fixed("dropout", 0.1)
    hp.Fixed("learning_rate", 0.01)
    if hp.Boolean("explode"):
        raise ValueError("this configuration cannot be built")
    return build_model(hp)


def test_a_raising_trial_fails_with_its_traceback_and_the_search_goes_on(tmp_path):
    tuner = kt.GridSearch(build_that_explodes, objective="val_accuracy", directory=str(tmp_path))
    distribute(tuner, parallel_trials=2)
    search(tuner, epochs=1)
    by_value = {t.hyperparameters["explode"]: t for t in trials_of(tuner)}
    assert by_value[False].status == TrialStatus.COMPLETED
    assert by_value[True].status == TrialStatus.FAILED
    assert "ValueError: this configuration cannot be built" in by_value[True].message
    assert "Traceback" in by_value[True].message


def test_consecutive_failures_stop_the_search_as_in_keras_tuner(tmp_path):
    def always_explodes(hp):
        hp.Int("units", 16, 256)
        if os.getpid() != DRIVER_PID:  # the tuner builds once here to learn the space
            raise ValueError("broken model")
        return build_model(hp)

    tuner = kt.RandomSearch(
        always_explodes,
        objective="val_accuracy",
        max_trials=6,
        max_consecutive_failed_trials=2,
        directory=str(tmp_path),
    )
    distribute(tuner, parallel_trials=2)
    with pytest.raises(RuntimeError, match="consecutive failures exceeded the limit of 2"):
        search(tuner, epochs=1)


class SlowEpochs(keras.callbacks.Callback):
    """Sleeps at each epoch's end and records the epoch numbers run, so a test can kill
    the worker mid-trial and see where training went on."""

    def __init__(self, log_path, seconds=0.4):
        super().__init__()
        self.log_path = str(log_path)
        self.seconds = seconds

    def on_epoch_begin(self, epoch, logs=None):
        with open(self.log_path, "a") as log:
            log.write(f"{epoch}\n")

    def on_epoch_end(self, epoch, logs=None):
        time.sleep(self.seconds)


def kill_worker_after_epoch(trial_dir: Path, epochs: int) -> threading.Thread:
    """Kill -9 the process running the trial once its checkpoint holds `epochs` epochs."""

    def watch():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            last = read_last_checkpoint(trial_dir)
            info = read_worker_info(trial_dir)
            if last and last[1] >= epochs and info:
                os.kill(info["pid"], signal.SIGKILL)
                return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_a_killed_worker_is_retried_from_its_last_epoch(tmp_path):
    tuner = kt.RandomSearch(
        build_model,
        objective="val_accuracy",
        max_trials=1,
        seed=4,
        directory=str(tmp_path),
        project_name="kill",
    )
    distribute(tuner, parallel_trials=1, max_retries=1, checkpoint_every_s=0)
    epoch_log = tmp_path / "epochs.txt"
    killer = kill_worker_after_epoch(tmp_path / "kill" / "trial_0", epochs=2)
    search(tuner, epochs=6, callbacks=[SlowEpochs(epoch_log)])
    killer.join(timeout=1)

    (trial,) = trials_of(tuner)
    assert trial.status == TrialStatus.COMPLETED
    info = read_worker_info(tuner.get_trial_dir(trial.trial_id))
    assert info["attempt"] == 2
    resumed_at = info["resumed_from_epoch"]
    assert resumed_at >= 2
    epochs = [int(line) for line in epoch_log.read_text().split()]
    assert epochs.count(0) == 1, epochs  # never started over
    assert epochs[-(6 - resumed_at) :] == list(range(resumed_at, 6))
    assert sorted(set(epochs)) == list(range(6))


def test_bad_arguments_are_explained(tmp_path):
    tuner = kt.RandomSearch(build_model, objective="val_accuracy", directory=str(tmp_path))
    with pytest.raises(ValueError, match="parallel_trials must be a positive integer"):
        distribute(tuner, parallel_trials=0)
    with pytest.raises(ValueError, match="unknown trial resources"):
        distribute(tuner, resources_per_trial={"gpus": 1})
    with pytest.raises(TypeError, match="Keras Tuner tuner"):
        distribute(object())


def test_results_summary_prints_the_distributed_trials(random_search, capsys):
    tuner, _ = random_search
    tuner.results_summary(2)
    out = capsys.readouterr().out
    assert out.count("Score:") == 2 and "val_accuracy" in out
