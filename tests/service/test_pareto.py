"""Several objectives: a trial's values, dominance, the front, and the sweep's targets."""

from __future__ import annotations

from ktsweep.service.pareto import dominates, objective_values, pareto_front
from ktsweep.service.scheduler import target_reached
from ktsweep.service.search import TrialRecord
from ktsweep.service.spec import ObjectiveSpec, parse_spec

ACCURACY_AND_SIZE = [
    ObjectiveSpec(name="val_accuracy", goal="maximize"),
    ObjectiveSpec(name="model/parameters", goal="minimize"),
]


def spec_with_targets(accuracy_target, size_target):
    return parse_spec(
        {
            "method": "custom",
            "metrics": [
                {"name": "val_accuracy", "goal": "maximize", "target": accuracy_target},
                {"name": "model/parameters", "goal": "minimize", "target": size_target},
            ],
            "scheduler": {"engine": "optuna"},
            "parameters": {"units": {"values": [8, 16]}},
            "trial": {"hypermodel": "m:f", "data": "m:g"},
        }
    )


def trial(number, accuracy, size, state="completed"):
    metrics = {"val_accuracy": accuracy, "model/parameters": size}
    return TrialRecord(number, {}, state, metrics=metrics)


def test_dominance_follows_each_objectives_goal():
    assert dominates([0.9, 100], [0.8, 200], ACCURACY_AND_SIZE)
    assert dominates([0.9, 100], [0.9, 200], ACCURACY_AND_SIZE)
    assert not dominates([0.9, 100], [0.9, 100], ACCURACY_AND_SIZE)
    assert not dominates([0.9, 300], [0.8, 200], ACCURACY_AND_SIZE)


def test_the_front_keeps_exactly_the_non_dominated_trials():
    points = [("a", [0.9, 300]), ("b", [0.8, 100]), ("c", [0.7, 200]), ("d", [0.9, 300])]
    assert pareto_front(points, ACCURACY_AND_SIZE) == ["a", "b", "d"]


def test_objective_values_come_from_final_metrics_then_the_latest_report():
    history = [{"step": 1, "metrics": {"val_accuracy": 0.5}}]
    assert objective_values({"model/parameters": 10}, ACCURACY_AND_SIZE, history) == [0.5, 10.0]
    assert objective_values({"val_accuracy": 0.7}, ACCURACY_AND_SIZE) is None


def test_sweep_ends_when_one_trial_meets_every_target():
    spec = spec_with_targets(0.9, 1000)
    # Each target is met by some trial, but not both by one.
    assert not target_reached(spec, [trial(0, 0.95, 5000), trial(1, 0.5, 500)])
    assert target_reached(spec, [trial(0, 0.95, 5000), trial(1, 0.92, 800)])


def test_objectives_without_targets_never_end_the_sweep():
    spec = spec_with_targets(None, None)
    assert not target_reached(spec, [trial(0, 1.0, 1)])
