"""The contract of the Keras Tuner internals ktsweep relies on: ktsweep/worker/compat/keras_tuner.py
(a trial run on a worker) and ktsweep/service/compat/keras_tuner.py (the oracle driven by the
controller). A failure names what moved and the module to update."""

from __future__ import annotations

import inspect
import os

import keras
import keras_tuner as kt
import numpy as np
import pytest

from ktsweep.service.compat import keras_tuner as service_compat
from ktsweep.worker.compat import keras_tuner as worker_compat

WORKER = "ktsweep/worker/compat/keras_tuner.py"
SERVICE = "ktsweep/service/compat/keras_tuner.py"


def moved(what: str, module: str) -> str:
    return f"keras-tuner {kt.__version__} moved {what}; update {module}"


def choice_space() -> kt.HyperParameters:
    hp = kt.HyperParameters()
    hp.Choice("c", ["a", "b"])
    return hp


def hyperband_oracle(tmp_path) -> kt.oracles.HyperbandOracle:
    oracle = kt.oracles.HyperbandOracle(
        objective=kt.Objective("score", "max"),
        max_epochs=9,
        factor=3,
        hyperband_iterations=1,
        hyperparameters=choice_space(),
        seed=1,
    )
    service_compat.set_project_dir(oracle, str(tmp_path), "oracle")
    oracle.verbose = 0
    return oracle


# The worker: a trial scored as BaseTuner scores it.


def test_a_reported_metric_gets_the_direction_of_the_objective_it_is():
    objective = [kt.Objective("val_loss", "min"), kt.Objective("acc", "max")]
    directions = [worker_compat.metric_direction(objective, name) for name in ("acc", "other")]
    assert directions == ["max", None], moved(
        "keras_tuner.src.engine.oracle._maybe_infer_direction_from_objective", WORKER
    )


def test_run_trial_results_of_a_wrong_type_are_refused_with_keras_tuners_error():
    objective = kt.Objective("val_loss", "min")
    worker_compat.validate_trial_results({"val_loss": 0.1}, objective, "Tuner.run_trial()")
    with pytest.raises(kt.errors.FatalTypeError):
        worker_compat.validate_trial_results("text", objective, "Tuner.run_trial()")


def test_a_history_is_scored_at_its_best_epoch():
    objective = kt.Objective("val_loss", "min")
    history = keras.callbacks.History()
    history.history = {"val_loss": [0.5, 0.3, 0.4], "loss": [1.0, 0.9, 0.8]}
    scored = (
        worker_compat.metrics_dict(history, objective),
        worker_compat.best_step(history, objective),
    )
    assert scored == ({"val_loss": 0.3, "loss": 0.9}, 1), moved(
        "keras_tuner.src.engine.tuner_utils.convert_to_metrics_dict / get_best_step", WORKER
    )


def test_a_number_or_a_dict_is_scored_at_step_0():
    objective = kt.Objective("score", "max")
    assert worker_compat.metrics_dict(0.7, objective) == {"score": 0.7}, moved(
        "keras_tuner.src.engine.tuner_utils.convert_to_metrics_dict", WORKER
    )
    assert worker_compat.best_step({"score": 0.7}, objective) == 0, moved(
        "keras_tuner.src.engine.tuner_utils.get_best_step", WORKER
    )


def test_run_trial_builds_its_model_through_the_wrapped_build(tmp_path):
    def build(hp):
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        return model

    tuner = kt.RandomSearch(
        build, objective="loss", max_trials=1, directory=str(tmp_path), project_name="p"
    )
    built = []

    def recording(original):
        def build_and_record(hp):
            built.append(hp)
            return original(hp)

        return build_and_record

    worker_compat.wrap_build(tuner, recording)
    trial = tuner.oracle.create_trial("worker")
    x = np.zeros((4, 2), "float32")
    tuner.run_trial(trial, x, x[:, :1], epochs=1, verbose=0)
    assert len(built) == 1, moved("Tuner._try_build (where run_trial builds its model)", WORKER)


# The controller: an oracle driven ask-and-tell and restored after a restart.


def test_an_oracle_given_a_project_dir_saves_its_state_there(tmp_path):
    oracle = kt.oracles.RandomSearchOracle(
        objective=kt.Objective("score", "max"), hyperparameters=choice_space(), max_trials=3
    )
    service_compat.set_project_dir(oracle, str(tmp_path), "oracle")
    oracle.save()
    assert os.path.isfile(tmp_path / "oracle" / "oracle.json"), moved(
        "Oracle._set_project_dir", SERVICE
    )


def test_putting_back_the_seed_state_replays_the_same_random_draw():
    oracle = kt.oracles.RandomSearchOracle(
        objective=kt.Objective("score", "max"),
        hyperparameters=choice_space(),
        max_trials=3,
        seed=3,
    )
    state = service_compat.seed_state(oracle)
    first = service_compat.random_values(oracle)
    service_compat.set_seed_state(oracle, state)
    again = service_compat.random_values(oracle)
    assert isinstance(first, dict) and first == again, moved(
        "Oracle._seed_state / Oracle._random_values", SERVICE
    )


def test_recorded_values_are_never_drawn_again():
    oracle = kt.oracles.RandomSearchOracle(
        objective=kt.Objective("score", "max"),
        hyperparameters=choice_space(),
        max_trials=3,
        seed=3,
    )
    trial = kt.engine.trial.Trial(hyperparameters=choice_space(), trial_id="0")
    trial.hyperparameters.values = {"c": "a"}
    service_compat.record_values(oracle, trial)
    draws = [service_compat.random_values(oracle) for _ in range(5)]
    assert draws == [{"c": "b"}] * 5, moved("Oracle._record_values", SERVICE)


def test_hyperband_brackets_hold_the_trials_of_each_round(tmp_path):
    oracle = hyperband_oracle(tmp_path)
    trial = oracle.create_trial("controller")
    brackets = service_compat.brackets(oracle)
    assert isinstance(brackets, list) and brackets, moved("HyperbandOracle._brackets", SERVICE)
    bracket = brackets[-1]
    assert set(bracket) >= {"bracket_num", "rounds"}, moved(
        "the layout of HyperbandOracle._brackets", SERVICE
    )
    assert bracket["rounds"][0] == [{"past_id": None, "id": trial.trial_id}], moved(
        "the layout of a round in HyperbandOracle._brackets", SERVICE
    )


def test_hyperband_gives_a_first_round_trial_the_budget_and_bracket_read_back(tmp_path):
    oracle = hyperband_oracle(tmp_path)
    values = oracle.create_trial("controller").hyperparameters.values
    bracket_num = service_compat.brackets(oracle)[-1]["bracket_num"]
    assert values["tuner/bracket"] == service_compat.current_bracket(oracle), moved(
        "HyperbandOracle._current_bracket", SERVICE
    )
    assert values["tuner/epochs"] == service_compat.round_epochs(oracle, bracket_num), moved(
        "HyperbandOracle._get_epochs", SERVICE
    )
    sizes = [service_compat.round_size(oracle, bracket_num, n) for n in range(3)]
    assert all(isinstance(size, int) for size in sizes) and sizes[0] > sizes[-1] >= 1, moved(
        "HyperbandOracle._get_size", SERVICE
    )


def test_a_new_hyperband_bracket_is_the_next_one_down(tmp_path):
    oracle = hyperband_oracle(tmp_path)
    oracle.create_trial("controller")
    first = service_compat.current_bracket(oracle)
    bracket = service_compat.start_new_bracket(oracle)
    assert bracket["bracket_num"] == service_compat.current_bracket(oracle) == first - 1, moved(
        "HyperbandOracle._increment_bracket_num / _start_new_bracket", SERVICE
    )
    assert bracket is service_compat.brackets(oracle)[-1], moved(
        "HyperbandOracle._start_new_bracket", SERVICE
    )


def test_only_hyperband_brackets_with_a_full_last_round_are_removed(tmp_path):
    oracle = hyperband_oracle(tmp_path)
    oracle.create_trial("controller")
    bracket = service_compat.start_new_bracket(oracle)
    last = len(bracket["rounds"]) - 1
    size = service_compat.round_size(oracle, bracket["bracket_num"], last)
    bracket["rounds"][last].extend({"past_id": None, "id": str(n)} for n in range(size))
    service_compat.remove_completed_brackets(oracle)
    assert bracket not in service_compat.brackets(oracle), moved(
        "HyperbandOracle._remove_completed_brackets", SERVICE
    )
    assert len(service_compat.brackets(oracle)) == 1, moved(
        "HyperbandOracle._remove_completed_brackets", SERVICE
    )


@pytest.mark.parametrize(
    ("owner", "name", "parameters"),
    [
        (kt.Oracle, "_set_project_dir", ["self", "directory", "project_name"]),
        (kt.Oracle, "_random_values", ["self"]),
        (kt.Oracle, "_record_values", ["self", "trial"]),
        (kt.oracles.HyperbandOracle, "_get_size", ["self", "bracket_num", "round_num"]),
        (kt.oracles.HyperbandOracle, "_get_epochs", ["self", "bracket_num", "round_num"]),
        (kt.oracles.HyperbandOracle, "_start_new_bracket", ["self"]),
        (kt.oracles.HyperbandOracle, "_increment_bracket_num", ["self"]),
        (kt.oracles.HyperbandOracle, "_remove_completed_brackets", ["self"]),
    ],
)
def test_the_private_methods_called_keep_their_signatures(owner, name, parameters):
    method = getattr(owner, name, None)
    assert callable(method), moved(f"{owner.__name__}.{name}", SERVICE)
    assert list(inspect.signature(method).parameters) == parameters, moved(
        f"the signature of {owner.__name__}.{name}", SERVICE
    )
