"""Search methods and W&B distributions: ranges, shapes, reproducibility, exhaustion."""

import math
import random

import pytest
from scipy import stats

from ktsweep.service.search import GridSearch, RandomSearch, TrialRecord, make_search_method
from ktsweep.service.search.distributions import sample_parameter
from ktsweep.service.spec import ParameterSpec, parse_spec
from tests.service.scripted_sweep import run_to_the_end

N = 4000


def spec_with(parameters, method="random", seed=1, run_cap=10, **extra):
    return parse_spec(
        {
            "method": method,
            "metric": {"name": "val_loss"},
            "parameters": parameters,
            "run_cap": run_cap,
            "seed": seed,
            "trial": {"hypermodel": "m:f", "data": "m:g", "fit": {"epochs": 9}},
            **extra,
        }
    )


def draws(parameter: dict, n=N, seed=0):
    rng = random.Random(seed)
    spec = ParameterSpec.model_validate(parameter)
    return [sample_parameter(spec, rng) for _ in range(n)]


def fits(values, distribution) -> bool:
    """Kolmogorov-Smirnov: the draws are consistent with the distribution (fixed seeds)."""
    return stats.kstest(values, distribution.cdf).pvalue > 0.01


def test_constant_is_always_its_value():
    assert set(draws({"value": "adam"}, n=50)) == {"adam"}


def test_categorical_takes_only_listed_values_about_equally():
    values = draws({"values": ["a", "b", "c"]})
    assert all(abs(values.count(v) / N - 1 / 3) < 0.03 for v in "abc")


def test_categorical_w_probabilities_weights_the_values():
    values = draws({"values": [0, 1, 2], "probabilities": [0.2, 0.5, 0.3]})
    assert [round(values.count(v) / N, 1) for v in (0, 1, 2)] == [0.2, 0.5, 0.3]


def test_int_uniform_covers_both_bounds_uniformly_with_integers():
    values = draws({"min": 2, "max": 5})
    assert set(values) == {2, 3, 4, 5} and all(type(v) is int for v in values)
    assert all(abs(values.count(v) / N - 0.25) < 0.03 for v in range(2, 6))


def test_uniform_is_uniform_between_min_and_max():
    values = draws({"min": 0.0, "max": 0.5})
    assert all(0.0 <= v <= 0.5 for v in values) and fits(values, stats.uniform(0, 0.5))


def test_log_uniform_takes_exponents_as_bounds():
    values = draws({"distribution": "log_uniform", "min": -5, "max": 0})
    assert all(math.exp(-5) <= v <= 1 for v in values)
    assert fits([math.log(v) for v in values], stats.uniform(-5, 5))


def test_log_uniform_values_is_uniform_in_log_space_between_values():
    values = draws({"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2})
    assert all(1e-4 <= v <= 1e-2 for v in values)
    low, high = math.log(1e-4), math.log(1e-2)
    assert fits([math.log(v) for v in values], stats.uniform(low, high - low))


def test_inv_log_uniform_is_exp_of_minus_uniform():
    values = draws({"distribution": "inv_log_uniform", "min": 0, "max": 5})
    assert all(math.exp(-5) <= v <= 1 for v in values)
    assert fits([-math.log(v) for v in values], stats.uniform(0, 5))


def test_inv_log_uniform_values_lies_between_the_values():
    values = draws({"distribution": "inv_log_uniform_values", "min": 0.1, "max": 10})
    assert all(0.1 <= v <= 10 for v in values)
    assert fits([math.log(1 / v) for v in values], stats.uniform(-math.log(10), 2 * math.log(10)))


def test_q_uniform_is_rounded_to_multiples_of_q_with_half_weight_at_the_ends():
    values = draws({"distribution": "q_uniform", "min": 0, "max": 10, "q": 2})
    assert set(values) == {0, 2, 4, 6, 8, 10} and all(type(v) is int for v in values)
    assert abs(values.count(0) / N - 0.1) < 0.02 and abs(values.count(4) / N - 0.2) < 0.03


def test_q_with_wandb_default_q_gives_whole_floats():
    values = draws({"distribution": "q_log_uniform", "min": 0, "max": 3})
    assert all(type(v) is float and v.is_integer() and 1 <= v <= 20 for v in values)


def test_q_log_uniform_values_is_quantized_log_uniform():
    values = draws({"distribution": "q_log_uniform_values", "min": 1, "max": 100, "q": 5})
    assert all(v % 5 == 0 and 0 <= v <= 100 for v in values)
    # Draws below 12.5 round to 10 or less: log(12.5) / log(100) of them.
    assert sum(v <= 10 for v in values) / N == pytest.approx(0.548, abs=0.03)


def test_normal_has_its_mean_and_spread():
    values = draws({"distribution": "normal", "mu": 3.0, "sigma": 2.0})
    assert fits(values, stats.norm(3.0, 2.0))


def test_q_normal_is_a_rounded_normal():
    values = draws({"distribution": "q_normal", "mu": 5, "sigma": 2, "q": 1})
    assert all(type(v) is int for v in values)
    assert statistics_mean(values) == pytest.approx(5, abs=0.1)


def test_log_normal_is_exp_of_a_normal():
    values = draws({"distribution": "log_normal", "mu": 1.0, "sigma": 0.5})
    assert all(v > 0 for v in values) and fits([math.log(v) for v in values], stats.norm(1, 0.5))


def test_q_log_normal_is_quantized_and_positive():
    values = draws({"distribution": "q_log_normal", "q": 0.5})
    assert all(v >= 0 and (v / 0.5).is_integer() for v in values)


def test_beta_has_its_shape():
    values = draws({"distribution": "beta", "a": 2, "b": 5})
    assert all(0 <= v <= 1 for v in values) and fits(values, stats.beta(2, 5))


def test_q_beta_is_quantized_beta():
    values = draws({"distribution": "q_beta", "a": 2, "b": 2, "q": 0.1})
    assert all(0 <= v <= 1 and abs(v * 10 - round(v * 10)) < 1e-9 for v in values)
    assert statistics_mean(values) == pytest.approx(0.5, abs=0.02)


def statistics_mean(values):
    return sum(values) / len(values)


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


def test_grid_over_nested_parameters_is_exhausted_after_the_product():
    parameters = {"bs": {"values": [32, 64]}, "opt": {"parameters": {"lr": {"values": [1, 2]}}}}
    grid = make_search_method(spec_with(parameters, method="grid"))
    configs = [grid.suggest(n, []) for n in range(4)]
    assert {(c["bs"], c["opt"]["lr"]) for c in configs} == {(32, 1), (32, 2), (64, 1), (64, 2)}
    assert grid.suggest(4, []) is None


def run_sequentially(search, objective, trials):
    """Suggest, score and observe `trials` trials one at a time; returns the values."""
    values = []
    for number in range(trials):
        config = search.suggest(number, [])
        value = objective(config)
        history = [{"step": 1, "metrics": {"val_loss": value}}]
        search.observe(TrialRecord(number, config, "completed", value, 1, history))
        values.append(value)
    return values


def quadratic(config):
    return (config["x"] - 0.3) ** 2 + (0.0 if config["c"] == "good" else 0.5)


SPACE = {"x": {"min": 0.0, "max": 1.0}, "c": {"values": ["good", "bad"]}}


def test_seeded_tpe_is_reproducible():
    first = run_sequentially(make_search_method(spec_with(SPACE, "tpe")), quadratic, 12)
    again = run_sequentially(make_search_method(spec_with(SPACE, "tpe")), quadratic, 12)
    assert first == again


def test_seeded_bayes_is_reproducible_past_its_random_start():
    # One dimension: 3 random trials, then the Gaussian process suggests the 4th.
    space = {"x": {"min": 0.0, "max": 1.0}, "c": {"value": "good"}}
    first = run_sequentially(make_search_method(spec_with(space, "bayes")), quadratic, 4)
    again = run_sequentially(make_search_method(spec_with(space, "bayes")), quadratic, 4)
    assert first == again


def test_tpe_concentrates_on_the_better_region():
    values = run_sequentially(make_search_method(spec_with(SPACE, "tpe", seed=2)), quadratic, 40)
    assert min(values[10:]) < 0.01 and sorted(values[-10:])[5] < sorted(values[:10])[5]


def test_failed_trial_is_learned_as_the_worst_value_by_default():
    search = make_search_method(spec_with(SPACE, "tpe"))
    run_sequentially(search, quadratic, 3)
    worst = max(r.objective for r in search.finished.values())
    failed = TrialRecord(3, search.suggest(3, []), "failed")
    assert search.objective_for(failed) == worst


@pytest.mark.parametrize(("impute", "expected"), [("best", 0.1), ("latest", 0.7)])
def test_impute_best_or_latest_as_in_wandb(impute, expected):
    spec = spec_with(SPACE, "random", metric={"name": "val_loss", "impute": impute})
    search = make_search_method(spec)
    for number, value in enumerate([0.1, 0.4]):
        search.observe(TrialRecord(number, {}, "completed", value))
    history = [{"step": 1, "metrics": {"val_loss": 0.7}}]
    assert search.objective_for(TrialRecord(2, {}, "failed", history=history)) == expected


def test_hyperband_budgets_brackets_and_continues_the_best_from_their_checkpoints():
    search = make_search_method(spec_with({"x": {"min": 0.0, "max": 1.0}}, "hyperband"))
    suggestions = run_to_the_end(search)
    first_round = [s for s in suggestions if s.parent is None and s.epochs == 1]
    assert len(first_round) == 9  # max_epochs 9, factor 3: 9 trials of 1 epoch, then 3 of 3, 1 of 9
    continued = [s for s in suggestions if s.parent is not None]
    assert {(s.initial_epoch, s.epochs) for s in continued} == {(1, 3), (3, 9)}
    for suggestion in continued:
        parent = suggestions[suggestion.parent]
        assert parent.hyperparameters == suggestion.hyperparameters
        assert parent.epochs == suggestion.initial_epoch
    best_of_first_round = min(first_round, key=lambda s: s.hyperparameters["x"])
    assert any(suggestions[s.parent] is best_of_first_round for s in continued)


def test_method_owns_the_spec_stopping_rule():
    spec = spec_with(SPACE, early_terminate={"type": "hyperband", "min_iter": 1, "eta": 2})
    search = make_search_method(spec)
    trials = [
        TrialRecord(n, {}, "completed", history=[{"step": 1, "metrics": {"val_loss": loss}}])
        for n, loss in enumerate([0.1, 0.2])
    ]
    bad = TrialRecord(2, {}, "running", history=[{"step": 1, "metrics": {"val_loss": 0.9}}])
    assert search.should_stop(bad, [*trials, bad])
    assert not make_search_method(spec_with(SPACE)).should_stop(bad, [*trials, bad])
