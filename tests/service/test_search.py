"""Random and grid search: ranges, reproducibility, exhaustion."""

import math
import random

from service.search import GridSearch, RandomSearch
from service.search.distributions import sample_parameter
from service.spec import ParameterSpec, parse_spec


def spec_with(parameters, method="random", seed=1, run_cap=10):
    return parse_spec(
        {
            "method": method,
            "metric": {"name": "val_loss"},
            "parameters": parameters,
            "run_cap": run_cap,
            "seed": seed,
            "trial": {"hypermodel": "m:f", "data": "m:g"},
        }
    )


def draws(parameter: dict, n=2000, seed=0):
    rng = random.Random(seed)
    spec = ParameterSpec.model_validate(parameter)
    return [sample_parameter(spec, rng) for _ in range(n)]


def test_int_uniform_covers_both_bounds_and_only_integers():
    values = draws({"min": 2, "max": 5})
    assert set(values) == {2, 3, 4, 5}


def test_uniform_stays_in_range_with_mean_in_the_middle():
    values = draws({"min": 0.0, "max": 0.5})
    assert all(0.0 <= v <= 0.5 for v in values)
    assert abs(sum(values) / len(values) - 0.25) < 0.02


def test_log_uniform_values_is_uniform_in_log_space():
    values = draws({"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2})
    assert all(1e-4 <= v <= 1e-2 for v in values)
    below_geometric_middle = sum(v < 1e-3 for v in values) / len(values)
    assert abs(below_geometric_middle - 0.5) < 0.05


def test_categorical_takes_only_listed_values_about_equally():
    values = draws({"values": ["a", "b", "c"]}, n=3000)
    counts = {v: values.count(v) for v in "abc"}
    assert all(abs(c / 3000 - 1 / 3) < 0.04 for c in counts.values())


def test_probabilities_weight_the_values():
    values = draws({"values": [0, 1], "probabilities": [0.2, 0.8]}, n=3000)
    assert abs(sum(values) / 3000 - 0.8) < 0.04


def test_q_uniform_is_quantized():
    values = draws({"distribution": "q_uniform", "min": 0, "max": 10, "q": 2})
    assert set(values) <= {0, 2, 4, 6, 8, 10}


def test_normal_has_its_mean_and_spread():
    values = draws({"distribution": "normal", "mu": 3.0, "sigma": 2.0}, n=4000)
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    assert abs(mean - 3.0) < 0.1 and abs(std - 2.0) < 0.1


def test_seeded_random_search_is_reproducible_per_trial_number():
    spec = spec_with({"lr": {"min": 0.0, "max": 1.0}, "units": {"values": [1, 2, 3]}})
    first = [RandomSearch(spec).suggest(n, []) for n in range(5)]
    again = [RandomSearch(spec).suggest(n, []) for n in range(5)]
    assert first == again
    assert len({c["lr"] for c in first}) == 5


def test_nested_parameters_come_out_nested():
    spec = spec_with(
        {"optimizer": {"parameters": {"lr": {"value": 0.1}, "name": {"value": "adam"}}}}
    )
    assert RandomSearch(spec).suggest(0, []) == {"optimizer": {"lr": 0.1, "name": "adam"}}


def test_grid_walks_every_combination_then_is_exhausted():
    spec = spec_with({"a": {"values": [1, 2]}, "b": {"min": 0, "max": 2}}, method="grid")
    grid = GridSearch(spec)
    configs = [grid.suggest(n, []) for n in range(6)]
    assert len({(c["a"], c["b"]) for c in configs}) == 6
    assert grid.suggest(6, []) is None
