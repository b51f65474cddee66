"""`distribute` with several objectives: Keras Tuner's summed score by default, the Pareto front
with `multi_objective=True`, and a trial's cost as an objective. Real Keras Tuner searches on
digits, trials on a real local Ray, W&B offline."""

from __future__ import annotations

import sys

import keras
import keras_tuner as kt
import pytest
import ray
from keras_tuner.engine.trial import TrialStatus

from ktsweep.examples.digits import build_model, load_data
from ktsweep.worker import distribute

# Workers unpickle this module's model function by value: it is not importable there.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.usefixtures("local_ray")
DATA = load_data()
ACCURACY_AND_SIZE = [kt.Objective("val_accuracy", "max"), kt.Objective("model/parameters", "min")]


def build_narrow_or_wide(hp: kt.HyperParameters) -> keras.Model:
    """An MLP of 4 or 64 units, trained fast or slowly: a size-accuracy trade-off, and trials
    that another trial of their size beats."""
    model = keras.Sequential(
        [
            keras.Input(shape=(64,)),
            keras.layers.Dense(hp.Choice("units", [4, 64]), activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(hp.Choice("learning_rate", [1e-2, 1e-4])),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def search(tuner) -> None:
    tuner.search(DATA["x"], DATA["y"], epochs=2, validation_data=DATA["validation_data"], verbose=0)


def completed(tuner) -> list[kt.engine.trial.Trial]:
    trials = list(tuner.oracle.trials.values())
    assert trials and all(trial.status == TrialStatus.COMPLETED for trial in trials)
    return trials


def recorded(trial, name: str) -> float:
    """The trial's one reported value of `name` (a trial reports once, at its best epoch)."""
    history = trial.metrics.get_history(name)
    assert len(history) == 1 and history[0].step == trial.best_step
    return float(history[0].mean())


def accuracy_and_size(trial) -> tuple[float, float]:
    return recorded(trial, "val_accuracy"), recorded(trial, "model/parameters")


def dominated_by(first: tuple[float, float], second: tuple[float, float]) -> bool:
    """Whether `second` (accuracy, parameters) is at least as good in both and not equal."""
    return second[0] >= first[0] and second[1] <= first[1] and second != first


@pytest.fixture(scope="module")
def summed_search(tmp_path_factory):
    """A list objective and no flag: the 4-trial search Keras Tuner's summed score ranks."""
    root = tmp_path_factory.mktemp("summed")
    tuner = kt.RandomSearch(
        build_model,
        objective=["val_accuracy", "val_loss"],
        max_trials=4,
        seed=5,
        directory=str(root),
        project_name="summed",
    )
    distribute(tuner, parallel_trials=2, wandb={"project": "tests", "dir": str(root / "wandb")})
    search(tuner)
    return tuner, root


@pytest.fixture(scope="module")
def front_search(tmp_path_factory):
    """Most accurate and fewest parameters, `multi_objective=True`: a 4-trial grid search."""
    root = tmp_path_factory.mktemp("front")
    tuner = kt.GridSearch(
        build_narrow_or_wide,
        objective=ACCURACY_AND_SIZE,
        max_trials=4,
        directory=str(root),
        project_name="front",
    )
    distribute(
        tuner,
        parallel_trials=2,
        wandb={"project": "tests", "dir": str(root / "wandb")},
        multi_objective=True,
    )
    search(tuner)
    return tuner


def test_a_list_objective_without_the_flag_ranks_trials_as_keras_tuners_summed_score(
    summed_search,
):
    tuner, root = summed_search
    trials = completed(tuner)
    losses = {t.trial_id: recorded(t, "val_loss") - recorded(t, "val_accuracy") for t in trials}
    assert all(trial.score == pytest.approx(losses[trial.trial_id]) for trial in trials)

    # Plain Keras Tuner's oracle, told the same values, picks the same trials in the same order.
    plain = kt.RandomSearch(
        build_model,
        objective=["val_accuracy", "val_loss"],
        max_trials=4,
        directory=str(root),
        project_name="plain",
    )
    as_distributed = {}
    for trial in trials:
        values = {name: recorded(trial, name) for name in ("val_accuracy", "val_loss")}
        values[plain.oracle.objective.name] = plain.oracle.objective.get_value(values)
        replayed = plain.oracle.create_trial("replay")
        plain.oracle.update_trial(replayed.trial_id, values)
        replayed.status = TrialStatus.COMPLETED
        plain.oracle.end_trial(replayed)
        as_distributed[replayed.trial_id] = trial.trial_id
    expected = [as_distributed[t.trial_id] for t in plain.oracle.get_best_trials(4)]
    assert [t.trial_id for t in tuner.oracle.get_best_trials(4)] == expected
    assert expected[0] == min(losses, key=losses.get)
    # Keras Tuner's defaults stay: one best trial, one best set of hyperparameters.
    best = tuner.oracle.trials[expected[0]]
    assert [hp.values for hp in tuner.get_best_hyperparameters()] == [best.hyperparameters.values]


def test_multi_objective_best_trials_are_exactly_the_pareto_front(front_search):
    tuner = front_search
    trials = completed(tuner)
    values = {trial.trial_id: accuracy_and_size(trial) for trial in trials}
    expected = {
        trial_id
        for trial_id, own in values.items()
        if not any(dominated_by(own, other) for other in values.values())
    }
    front = tuner.oracle.get_best_trials()
    assert {trial.trial_id for trial in front} == expected
    assert len(expected) >= 2  # the search has a trade-off: the narrow and the wide model
    # The most accurate trial and the smallest one (each the best of its ties) are on it.
    assert max(values, key=lambda t: (values[t][0], -values[t][1])) in expected
    assert min(values, key=lambda t: (values[t][1], -values[t][0])) in expected
    # Best first by the first objective.
    accuracies = [values[trial.trial_id][0] for trial in front]
    assert accuracies == sorted(accuracies, reverse=True)
    assert [hp.values for hp in tuner.get_best_hyperparameters()] == [
        trial.hyperparameters.values for trial in front
    ]


def test_no_returned_trial_is_dominated_by_any_trial_of_the_search(front_search):
    tuner = front_search
    values = {trial.trial_id: accuracy_and_size(trial) for trial in completed(tuner)}
    for trial in tuner.oracle.get_best_trials():
        own = values[trial.trial_id]
        assert not any(dominated_by(own, other) for other in values.values())


def test_a_count_gives_the_front_best_first_and_never_more_than_the_front(front_search):
    tuner = front_search
    front = [trial.hyperparameters.values for trial in tuner.oracle.get_best_trials()]
    many = tuner.get_best_hyperparameters(num_trials=len(tuner.oracle.trials) + 3)
    assert [hp.values for hp in many] == front
    assert [hp.values for hp in tuner.get_best_hyperparameters(1)] == front[:1]


def test_best_models_are_the_fronts_models_at_their_recorded_values(front_search):
    tuner = front_search
    front = tuner.oracle.get_best_trials()
    models = tuner.get_best_models()
    assert len(models) == len(front)
    for trial, model in zip(front, models, strict=True):
        accuracy, parameters = accuracy_and_size(trial)
        assert model.count_params() == parameters
        _, evaluated = model.evaluate(*DATA["validation_data"], verbose=0)
        assert evaluated == pytest.approx(accuracy, abs=1e-4)


def test_the_parameter_count_is_an_objective_with_no_code_of_the_users(front_search):
    tuner = front_search
    for trial in completed(tuner):
        built = build_narrow_or_wide(trial.hyperparameters)
        assert recorded(trial, "model/parameters") == built.count_params()


def test_results_summary_shows_the_front_with_each_objective(front_search, capsys):
    tuner = front_search
    front = {trial.trial_id for trial in tuner.oracle.get_best_trials()}
    tuner.results_summary()
    printed = capsys.readouterr().out
    shown = {line.split()[1] for line in printed.splitlines() if line.startswith("Trial ")}
    assert shown == front
    assert printed.count("model/parameters: ") == len(front)
    assert printed.count("val_accuracy: ") == len(front)


def test_multi_objective_must_be_a_bool(tmp_path):
    tuner = kt.RandomSearch(
        build_model, objective=ACCURACY_AND_SIZE, max_trials=1, directory=str(tmp_path)
    )
    with pytest.raises(TypeError, match="multi_objective must be True"):
        distribute(tuner, multi_objective="yes")
