"""The sweep spec: what is accepted, what is rejected, and where each problem is."""

from pathlib import Path

import pytest

from service.spec import SpecError, parse_spec

EXAMPLE = Path(__file__).parents[2] / "examples" / "digits" / "sweep.yaml"


def minimal_spec(**changes):
    spec = {
        "method": "random",
        "metric": {"name": "val_accuracy", "goal": "maximize"},
        "parameters": {"units": {"values": [16, 32]}},
        "run_cap": 2,
        "trial": {"hypermodel": "examples.digits:build_model", "data": "examples.digits:load_data"},
    }
    spec.update(changes)
    return spec


def problem_paths(spec) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_spec(spec)
    return [problem.path for problem in caught.value.problems]


def test_example_sweep_is_valid():
    spec = parse_spec(EXAMPLE.read_text())
    assert spec.method == "random"
    assert spec.run_cap == 8 and spec.parallelism == 2
    assert spec.trial.fit.epochs == 5


def test_unknown_top_level_field_is_named():
    with pytest.raises(SpecError) as caught:
        parse_spec(minimal_spec(epochz=3))
    (problem,) = caught.value.problems
    assert problem.path == "epochz"
    assert "unknown field" in problem.message and "run_cap" in problem.message


def test_min_greater_than_max_is_named_with_its_path():
    spec = minimal_spec(parameters={"lr": {"min": 0.5, "max": 0.1}})
    assert problem_paths(spec) == ["parameters.lr.min"]


def test_nested_parameter_problem_has_nested_path():
    spec = minimal_spec(parameters={"opt": {"parameters": {"lr": {"min": 2, "max": 1}}}})
    assert problem_paths(spec) == ["parameters.opt.parameters.lr.min"]


def test_every_problem_is_listed_at_once():
    spec = minimal_spec(parameters={"lr": {"min": 0.5, "max": 0.1}}, run_cap=None, bogus=1)
    paths = problem_paths(spec)
    assert "bogus" in paths


def test_entry_point_must_name_a_function():
    spec = minimal_spec(
        trial={"hypermodel": "examples.digits", "data": "examples.digits:load_data"}
    )
    assert problem_paths(spec) == ["trial.hypermodel"]


def test_random_search_needs_run_cap():
    assert problem_paths(minimal_spec(run_cap=None)) == ["run_cap"]


def test_log_scale_needs_positive_min():
    spec = minimal_spec(
        parameters={"lr": {"distribution": "log_uniform_values", "min": 0, "max": 0.1}}
    )
    assert problem_paths(spec) == ["parameters.lr.min"]


@pytest.mark.parametrize(
    ("parameter", "distribution"),
    [
        ({"value": 3}, "constant"),
        ({"values": [1, 2]}, "categorical"),
        ({"values": [1, 2], "probabilities": [0.3, 0.7]}, "categorical_w_probabilities"),
        ({"min": 1, "max": 5}, "int_uniform"),
        ({"min": 0.0, "max": 5}, "uniform"),
        ({"mu": 0, "sigma": 1}, "normal"),
    ],
)
def test_distribution_is_inferred_as_in_wandb(parameter, distribution):
    spec = parse_spec(minimal_spec(parameters={"p": parameter}))
    assert spec.parameters["p"].resolved_distribution() == distribution


def test_grid_rejects_continuous_parameter():
    spec = minimal_spec(method="grid", parameters={"dropout": {"min": 0.0, "max": 0.5}})
    assert problem_paths(spec) == ["parameters.dropout"]


def test_yaml_that_does_not_parse_is_a_problem():
    with pytest.raises(SpecError) as caught:
        parse_spec("method: [random")
    assert "not valid YAML" in caught.value.problems[0].message
