"""The `hyperband` section sets the factor of method hyperband (Keras Tuner's Hyperband)."""

from __future__ import annotations

import pytest

from ktsweep.service.search import make_search_method
from ktsweep.service.spec import SpecError, parse_spec
from tests.service.scripted_sweep import run_to_the_end


def hyperband_spec(epochs=8, method="hyperband", **extra):
    return {
        "method": method,
        "metric": {"name": "val_loss"},
        "parameters": {"x": {"min": 0.0, "max": 1.0}},
        "seed": 1,
        "trial": {"hypermodel": "m:f", "data": "m:g", "fit": {"epochs": epochs}},
        **extra,
    }


def problems(spec) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as caught:
        parse_spec(spec)
    return [(problem.path, problem.message) for problem in caught.value.problems]


def test_hyperband_factor_defaults_to_three():
    spec = parse_spec(hyperband_spec(epochs=9))
    assert spec.hyperband is None and make_search_method(spec).oracle.factor == 3


def test_hyperband_factor_sets_the_brackets_budgets_and_how_many_go_on():
    search = make_search_method(parse_spec(hyperband_spec(epochs=8, hyperband={"factor": 2})))
    suggestions = run_to_the_end(search)
    first_round = [s for s in suggestions if s.parent is None and s.epochs == 1]
    # max_epochs 8, factor 2: the first bracket runs 8 trials of 1 epoch, continues 4 to 2.
    assert len(first_round) == 8
    continued = [(s.initial_epoch, s.epochs) for s in suggestions if s.parent is not None]
    assert sorted(set(continued)) == [(1, 2), (2, 4), (4, 8)]
    assert continued.count((1, 2)) == 4


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"factor": 1}, "greater than or equal to 2"),
        ({"factor": 2.5}, "integer"),
        ({"factor": "three"}, "integer"),
        ({"factor": 9}, "lower `factor` to at most 8"),
    ],
)
def test_bad_hyperband_factor_is_refused_at_its_path(options, words):
    [(path, message)] = problems(hyperband_spec(epochs=8, hyperband=options))
    assert path == "hyperband.factor" and words in message


def test_unknown_hyperband_option_is_refused_at_its_path():
    [(path, _)] = problems(hyperband_spec(hyperband={"eta": 2}))
    assert path == "hyperband.eta"


def test_hyperband_options_with_another_method_are_refused():
    [(path, message)] = problems(hyperband_spec(method="bayes", hyperband={"factor": 2}))
    assert path == "hyperband" and "early_terminate" in message
