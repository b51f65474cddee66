"""The sweep spec: what is accepted, what is rejected, and where each problem is."""

from pathlib import Path

import pytest

from ktsweep.service.spec import DISTRIBUTIONS, SpecError, parse_spec

EXAMPLE = Path(__file__).parents[2] / "examples" / "digits" / "sweep.yaml"
TRIAL = {
    "hypermodel": "ktsweep.examples.digits:build_model",
    "data": "ktsweep.examples.digits:load_data",
}


def minimal_spec(**changes):
    spec = {
        "method": "random",
        "metric": {"name": "val_accuracy", "goal": "maximize"},
        "parameters": {"units": {"values": [16, 32]}},
        "run_cap": 2,
        "trial": dict(TRIAL),
    }
    spec.update(changes)
    return {key: value for key, value in spec.items() if value is not None}


def problem_paths(spec) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_spec(spec)
    return [problem.path for problem in caught.value.problems]


def with_parameter(parameter, method="random"):
    return minimal_spec(method=method, parameters={"p": parameter})


def test_example_sweep_is_valid():
    spec = parse_spec(EXAMPLE.read_text())
    assert spec.method == "random"
    assert spec.run_cap == 8 and spec.parallelism == 2
    assert spec.trial.fit.epochs == 5


# W&B's public example sweeps (wandb/sweeps, examples/), as they are, plus a `trial:` section.
WANDB_EXAMPLES = {
    "sweep-bayes": """
description: sweep example using bayes search
program: train.py
project: sweeps-examples
method: bayes
metric: {name: loss_metric, goal: minimize}
parameters:
  epochs: {value: 5}
  variance: {value: 5}
  sleep: {value: 0.5}
  base: {values: [10, 15, 20]}
  increment: {values: [0.1, 0.2, 0.3]}
  direction: {values: [-1, 0.1, 1]}
""",
    "sweep-local-hyperband": """
description: sweep examples using local controller and hyperband
program: train-local.py
project: sweeps-examples
method: grid
controller: {type: local}
metric: {name: loss_metric, goal: minimize}
early_terminate: {type: hyperband, max_iter: 10, s: 2, eta: 3}
parameters:
  epochs: {value: 20}
  base: {values: [10, 15, 20]}
  increment: {values: [0.1, 0.2, 0.3]}
""",
    "sweep-nested-cli": """
description: sweep examples with nested parameters using cli
program: train-nested-cli.py
project: sweeps-examples
method: grid
metric: {name: loss, goal: minimize}
parameters:
  batch_size: {values: [32, 64]}
  optimizer:
    parameters:
      lr: {values: [0.001, 0.0001]}
      nadam:
        parameters:
          beta: {values: [0.9, 0.95]}
""",
    "docs-random": """
program: train.py
method: random
name: sweep
metric: {goal: minimize, name: validation_loss}
parameters:
  batch_size: {values: [16, 32, 64]}
  epochs: {values: [5, 10, 15]}
  lr: {max: 0.1, min: 0.0001}
early_terminate: {type: hyperband, min_iter: 3}
command:
  - ${env}
  - python
  - ${program}
  - ${args}
run_cap: 10
""",
}


@pytest.mark.parametrize("name", sorted(WANDB_EXAMPLES))
def test_wandb_example_sweeps_are_accepted(name):
    text = WANDB_EXAMPLES[name] + "trial: {hypermodel: ktsweep.examples.digits:build_model, "
    text += "data: ktsweep.examples.digits:load_data}\n"
    spec = parse_spec(text)
    assert spec.metric is not None and spec.parameters


def test_unknown_top_level_field_is_named():
    with pytest.raises(SpecError) as caught:
        parse_spec(minimal_spec(epochz=3))
    (problem,) = caught.value.problems
    assert problem.path == "epochz"
    assert "unknown field" in problem.message and "run_cap" in problem.message


def test_wandb_only_fields_are_refused_with_a_reason():
    with pytest.raises(SpecError) as caught:
        parse_spec(minimal_spec(job="wandb/jobs/train:latest"))
    assert caught.value.problems[0].path == "job"
    assert "not supported" in caught.value.problems[0].message


def test_unknown_method_lists_the_methods():
    with pytest.raises(SpecError) as caught:
        parse_spec(minimal_spec(method="evolution"))
    assert caught.value.problems[0].path == "method"
    assert "tpe" in caught.value.problems[0].message


@pytest.mark.parametrize("method", ["grid", "random", "bayes", "hyperband", "tpe"])
def test_every_method_is_accepted(method):
    trial = {**TRIAL, "fit": {"epochs": 9}}
    assert parse_spec(minimal_spec(method=method, trial=trial)).method == method


def test_min_greater_than_max_is_named_with_its_path():
    with pytest.raises(SpecError) as caught:
        parse_spec(with_parameter({"min": 0.5, "max": 0.1}))
    (problem,) = caught.value.problems
    assert problem.path == "parameters.p.min"
    assert "greater than max" in problem.message and "swap" in problem.message


def test_min_equal_to_max_is_rejected_as_in_wandb():
    assert problem_paths(with_parameter({"min": 3, "max": 3})) == ["parameters.p.min"]


def test_nested_parameter_problem_has_nested_path():
    spec = minimal_spec(parameters={"opt": {"parameters": {"lr": {"min": 2, "max": 1}}}})
    assert problem_paths(spec) == ["parameters.opt.parameters.lr.min"]


def test_every_problem_is_listed_at_once():
    spec = minimal_spec(parameters={"lr": {"min": 0.5, "max": 0.1}}, bogus=1)
    assert set(problem_paths(spec)) == {"bogus"}  # pydantic problems come first
    spec = minimal_spec(parameters={"lr": {"min": 0.5, "max": 0.1}, "u": {"values": []}})
    assert set(problem_paths(spec)) == {"parameters.lr.min", "parameters.u.values"}


def test_entry_point_must_name_a_function():
    spec = minimal_spec(trial={"hypermodel": "ktsweep.examples.digits", "data": TRIAL["data"]})
    assert problem_paths(spec) == ["trial.hypermodel"]


def test_a_sweep_without_run_cap_is_accepted_as_in_wandb():
    assert parse_spec(minimal_spec(run_cap=None)).run_cap is None


def test_run_cap_must_be_positive():
    assert problem_paths(minimal_spec(run_cap=0)) == ["run_cap"]


def test_parameters_may_be_left_to_the_hypermodel():
    assert parse_spec(minimal_spec(parameters=None)).parameters is None


def test_empty_parameters_are_rejected():
    assert problem_paths(minimal_spec(parameters={})) == ["parameters"]


def test_parameter_names_follow_wandb_pattern():
    spec = minimal_spec(parameters={"1st layer": {"values": [1]}})
    assert problem_paths(spec) == ["parameters.1st layer"]


@pytest.mark.parametrize(
    ("parameter", "distribution"),
    [
        ({"value": 3}, "constant"),
        ({"value": None}, "constant"),
        ({"values": [1, 2]}, "categorical"),
        ({"values": [1, 2], "probabilities": [0.3, 0.7]}, "categorical_w_probabilities"),
        ({"min": 1, "max": 5}, "int_uniform"),
        ({"min": 0.0, "max": 5}, "uniform"),
        ({"min": 0, "max": 5.0}, "uniform"),
        ({"distribution": "uniform", "min": 0, "max": 5}, "uniform"),
    ],
)
def test_distribution_is_inferred_as_in_wandb(parameter, distribution):
    spec = parse_spec(with_parameter(parameter))
    assert spec.parameters["p"].resolved_distribution() == distribution


VALID = {
    "constant": {"value": "adam"},
    "categorical": {"values": [1, 2]},
    "categorical_w_probabilities": {"values": [1, 2], "probabilities": [0.5, 0.5]},
    "int_uniform": {"min": 1, "max": 4},
    "uniform": {"min": 0, "max": 1},
    "log_uniform": {"min": -5, "max": 0},
    "log_uniform_values": {"min": 1e-5, "max": 1},
    "inv_log_uniform": {"min": 0, "max": 5},
    "inv_log_uniform_values": {"min": 0.1, "max": 10},
    "q_uniform": {"min": 0, "max": 10, "q": 2},
    "q_log_uniform": {"min": 0, "max": 3},
    "q_log_uniform_values": {"min": 1, "max": 100, "q": 5},
    "normal": {},
    "q_normal": {"mu": 5, "sigma": 2, "q": 1},
    "log_normal": {"mu": 0, "sigma": 0.5},
    "q_log_normal": {"q": 0.5},
    "beta": {"a": 2, "b": 5},
    "q_beta": {"q": 0.1},
}


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_every_distribution_is_accepted_with_its_fields(distribution):
    spec = parse_spec(with_parameter({"distribution": distribution, **VALID[distribution]}))
    assert spec.parameters["p"].resolved_distribution() == distribution


@pytest.mark.parametrize(
    ("parameter", "path"),
    [
        ({"mu": 0, "sigma": 1}, "parameters.p"),  # W&B infers no normal without `distribution`
        ({"values": [1], "min": 0}, "parameters.p"),  # no schema has both
        ({"min": 1}, "parameters.p.max"),
        ({}, "parameters.p"),
        ({"distribution": "gamma", "min": 0, "max": 1}, "parameters.p.distribution"),
        ({"distribution": "uniform", "min": 0}, "parameters.p.max"),
        ({"distribution": "normal", "min": 0, "max": 1}, "parameters.p.max"),
        (
            {"distribution": "categorical", "values": [1], "probabilities": [1]},
            "parameters.p.probabilities",
        ),  # fmt: skip
        (
            {"distribution": "categorical_w_probabilities", "values": [1, 2]},
            "parameters.p.probabilities",
        ),  # fmt: skip
        ({"values": [1, 2], "probabilities": [0.5]}, "parameters.p.probabilities"),
        ({"values": [1, 2], "probabilities": [0.5, 0.6]}, "parameters.p.probabilities"),
        ({"values": [1, 2], "probabilities": [1.5, -0.5]}, "parameters.p.probabilities"),
        ({"values": []}, "parameters.p.values"),
        ({"distribution": "int_uniform", "min": 0.5, "max": 3}, "parameters.p.min"),
        ({"distribution": "log_uniform_values", "min": 0, "max": 0.1}, "parameters.p.min"),
        ({"distribution": "inv_log_uniform_values", "min": -1, "max": 1}, "parameters.p.min"),
        ({"distribution": "q_log_uniform_values", "min": 0, "max": 9}, "parameters.p.min"),
        ({"distribution": "q_uniform", "min": 0, "max": 1, "q": 0}, "parameters.p.q"),
        ({"distribution": "normal", "sigma": -1}, "parameters.p.sigma"),
        ({"distribution": "beta", "a": 0}, "parameters.p.a"),
        ({"distribution": "q_beta", "b": -2}, "parameters.p.b"),
        ({"parameters": {"x": {"value": 1}}, "value": 2}, "parameters.p"),
        ({"parameters": {}}, "parameters.p.parameters"),
        ({"values": 3}, "parameters.p.values"),
    ],
)
def test_invalid_parameter_is_rejected_with_its_path(parameter, path):
    assert path in problem_paths(with_parameter(parameter))


@pytest.mark.parametrize(
    "parameter",
    [
        {"min": 0.0, "max": 0.5},
        {"distribution": "normal"},
        {"distribution": "q_uniform", "min": 0, "max": 4},
    ],  # fmt: skip
)
def test_grid_rejects_continuous_parameter(parameter):
    assert problem_paths(with_parameter(parameter, method="grid")) == ["parameters.p"]


def test_metric_defaults_follow_wandb():
    metric = parse_spec(minimal_spec(metric={"name": "loss"})).metric
    assert (metric.goal, metric.impute, metric.impute_while_running) == (
        "minimize",
        "worst",
        "false",
    )


@pytest.mark.parametrize(
    ("metric", "path"),
    [
        ({"goal": "minimize"}, "metric.name"),
        ({"name": "loss", "goal": "lower"}, "metric.goal"),
        ({"name": "loss", "impute": "zero"}, "metric.impute"),
        ({"name": "loss", "target": "high"}, "metric.target"),
        ({"name": "loss", "weight": 2}, "metric.weight"),
    ],
)
def test_invalid_metric_is_rejected_with_its_path(metric, path):
    assert problem_paths(minimal_spec(metric=metric)) == [path]


def test_hyperband_early_terminate_defaults_follow_wandb():
    spec = parse_spec(minimal_spec(early_terminate={"type": "hyperband", "min_iter": 3}))
    assert (spec.early_terminate.eta, spec.early_terminate.strict) == (3, True)
    assert spec.early_terminate.bands()[:4] == [3, 9, 27, 81]


def test_hyperband_bands_from_max_iter_and_s_count_down_from_max_iter():
    config = {"type": "hyperband", "max_iter": 27, "s": 2, "eta": 3}
    assert parse_spec(minimal_spec(early_terminate=config)).early_terminate.bands() == [3, 9]


@pytest.mark.parametrize(
    ("early_terminate", "path"),
    [
        ({"type": "hyperband"}, "early_terminate"),
        ({"type": "hyperband", "max_iter": 27}, "early_terminate"),
        ({"type": "hyperband", "max_iter": 2, "s": 1, "eta": 3}, "early_terminate"),
        ({"type": "hyperband", "min_iter": 0}, "early_terminate.min_iter"),
        ({"type": "hyperband", "min_iter": 1, "eta": 1}, "early_terminate.eta"),
        ({"type": "hyperband", "min_iter": 1, "strict": "very"}, "early_terminate.strict"),
        ({"type": "hyperband", "min_iter": 1, "bands": [1]}, "early_terminate.bands"),
        ({"type": "envelope"}, "early_terminate.type"),
        ({"type": "asha", "eta": 1}, "early_terminate.eta"),
        ({"type": "median", "n_warmup_steps": -1}, "early_terminate.n_warmup_steps"),
    ],
)
def test_invalid_early_terminate_is_rejected_with_its_path(early_terminate, path):
    assert problem_paths(minimal_spec(early_terminate=early_terminate)) == [path]


def test_hyperband_method_needs_an_epoch_budget():
    spec = minimal_spec(method="hyperband", trial={**TRIAL, "fit": {"epochs": 1}})
    assert problem_paths(spec) == ["trial.fit.epochs"]


def test_yaml_that_does_not_parse_is_a_problem():
    with pytest.raises(SpecError) as caught:
        parse_spec("method: [random")
    assert "not valid YAML" in caught.value.problems[0].message
