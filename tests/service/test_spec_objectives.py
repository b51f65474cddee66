"""Multi-objective sweeps in the spec: W&B's `metrics`, `method: custom` and `scheduler`."""

import importlib.util

import pytest

from ktsweep.service.spec import SpecError, objectives_of, parse_spec

TRIAL = (
    "trial: {hypermodel: ktsweep.examples.digits:build_model, "
    "data: ktsweep.examples.digits:load_data}\n"
)

# As W&B's docs write a multi-objective sweep, plus a `trial:` section.
WANDB_MULTI_OBJECTIVE = """
method: custom
metrics:
  - name: val_accuracy
    goal: maximize
  - name: model/parameters
    goal: minimize
scheduler:
  engine: optuna
parameters:
  units: {values: [16, 32, 64]}
  learning_rate: {min: 0.0001, max: 0.1, distribution: log_uniform_values}
"""

WANDB_CUSTOM_ONE_METRIC = """
method: custom
metric: {name: val_loss, goal: minimize}
scheduler: {engine: optuna}
parameters:
  units: {values: [16, 32]}
"""


def spec_with(**changes):
    spec = {
        "method": "custom",
        "metrics": [
            {"name": "val_accuracy", "goal": "maximize"},
            {"name": "model/parameters", "goal": "minimize"},
        ],
        "scheduler": {"engine": "optuna"},
        "parameters": {"units": {"values": [16, 32]}},
        "trial": {
            "hypermodel": "ktsweep.examples.digits:build_model",
            "data": "ktsweep.examples.digits:load_data",
        },
    }
    spec.update(changes)
    return {key: value for key, value in spec.items() if value is not None}


def problems_of(spec) -> dict[str, str]:
    with pytest.raises(SpecError) as caught:
        parse_spec(spec)
    return {problem.path: problem.message for problem in caught.value.problems}


def test_wandb_multi_objective_example_is_accepted():
    spec = parse_spec(WANDB_MULTI_OBJECTIVE + TRIAL)
    assert spec.method == "custom" and spec.scheduler.engine == "optuna"
    assert [(o.name, o.goal) for o in objectives_of(spec)] == [
        ("val_accuracy", "maximize"),
        ("model/parameters", "minimize"),
    ]


def test_custom_method_with_one_metric_is_accepted():
    spec = parse_spec(WANDB_CUSTOM_ONE_METRIC + TRIAL)
    assert [(o.name, o.goal) for o in objectives_of(spec)] == [("val_loss", "minimize")]


def test_metrics_targets_are_kept():
    metrics = [
        {"name": "val_accuracy", "goal": "maximize", "target": 0.9},
        {"name": "model/parameters", "goal": "minimize", "target": 5000},
    ]
    spec = parse_spec(spec_with(metrics=metrics))
    assert [o.target for o in spec.metrics] == [0.9, 5000]


def test_metrics_with_metric_is_refused():
    problems = problems_of(spec_with(metric={"name": "val_loss"}))
    assert "not both" in problems["metrics"]


def test_metrics_without_method_custom_is_refused():
    problems = problems_of(spec_with(method="tpe", scheduler=None))
    assert "method: custom" in problems["method"]


def test_a_single_objective_in_metrics_is_refused():
    problems = problems_of(spec_with(metrics=[{"name": "val_loss", "goal": "minimize"}]))
    assert "at least two" in problems["metrics"] and "metric:" in problems["metrics"]


def test_an_objective_listed_twice_is_refused():
    problems = problems_of(spec_with(metrics=[{"name": "val_loss"}, {"name": "val_loss"}]))
    assert "twice" in problems["metrics.1.name"]


def test_an_unknown_goal_names_its_path():
    problems = problems_of(spec_with(metrics=[{"name": "a"}, {"name": "b", "goal": "up"}]))
    assert set(problems) == {"metrics.1.goal"}


def test_method_custom_without_a_scheduler_is_refused():
    problems = problems_of(spec_with(scheduler=None))
    assert "engine: optuna" in problems["scheduler"]


def test_scheduler_without_method_custom_is_refused():
    problems = problems_of(spec_with(method="random", metrics=None, metric={"name": "val_loss"}))
    assert "method: custom" in problems["method"]


def test_scheduler_with_early_terminate_is_refused():
    problems = problems_of(spec_with(early_terminate={"type": "hyperband", "min_iter": 1}))
    assert "cannot be combined" in problems["early_terminate"]


def test_custom_method_without_any_objective_is_refused():
    problems = problems_of(spec_with(metrics=None))
    assert set(problems) == {"metric"}


def test_engine_wandb_says_to_use_optuna():
    problems = problems_of(spec_with(scheduler={"engine": "wandb"}))
    assert "engine: optuna" in problems["scheduler.engine"]


@pytest.mark.skipif(importlib.util.find_spec("ax") is not None, reason="ax is installed")
def test_engine_ax_without_ax_names_the_extra():
    problems = problems_of(spec_with(scheduler={"engine": "ax"}))
    assert "pip install 'ktsweep[ax]'" in problems["scheduler.engine"]


def test_an_unknown_engine_lists_the_engines():
    problems = problems_of(spec_with(scheduler={"engine": "hyperopt"}))
    assert "optuna" in problems["scheduler.engine"]


@pytest.mark.parametrize("field", ["source", "optimizer", "search_space"])
def test_scheduler_user_code_fields_pass_the_schema(field):
    # What they name is checked at submission, against the operator's folders and in a child
    # process (tests/service/test_search_user_code.py), never by parsing the spec.
    spec = parse_spec(spec_with(scheduler={"engine": "optuna", field: "my_study.py"}))
    assert getattr(spec.scheduler, field) == "my_study.py"
