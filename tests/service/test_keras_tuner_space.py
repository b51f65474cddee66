"""Search spaces that `build(hp)` declares: discovered as Keras Tuner does, mixed with W&B's."""

import keras

from ktsweep.service.search import check_search_space, make_search_method
from ktsweep.service.search.keras_tuner_space import discover_space
from ktsweep.service.spec import parse_spec
from ktsweep.worker import hyperparameters_for

HERE = "test_keras_tuner_space"


def build_conditional(hp):
    """A hypermodel with a conditional scope per model type, a name scope and every hp kind."""
    model_type = hp.Choice("model_type", ["mlp", "wide"])
    with hp.conditional_scope("model_type", ["mlp"]):
        if model_type == "mlp":
            hp.Int("layers", 1, 3)
    with hp.conditional_scope("model_type", ["wide"]):
        if model_type == "wide":
            hp.Int("width", 64, 256, step=64)
    with hp.name_scope("optimizer"):
        hp.Float("lr", 1e-4, 1e-1, sampling="log")
    hp.Boolean("batch_norm")
    hp.Fixed("activation", "relu")
    hp.Float("dropout", 0.0, 0.4, step=0.2)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    return model


def build_continuous(hp):
    hp.Float("dropout", 0.0, 0.5)
    return build_conditional(hp)


def spec(method="random", parameters=None, hypermodel=f"{HERE}:build_conditional"):
    data = {
        "method": method,
        "metric": {"name": "val_loss"},
        "run_cap": 40,
        "seed": 5,
        "trial": {"hypermodel": hypermodel, "data": "ktsweep.examples.digits:load_data"},
    }
    if parameters is not None:
        data["parameters"] = parameters
    return parse_spec(data)


def test_discovery_finds_every_hyperparameter_of_every_conditional_scope():
    space = discover_space(f"{HERE}:build_conditional")
    kinds = {hp.name: type(hp).__name__ for hp in space.space}
    assert kinds == {
        "model_type": "Choice",
        "layers": "Int",
        "width": "Int",
        "optimizer/lr": "Float",
        "batch_norm": "Boolean",
        "activation": "Fixed",
        "dropout": "Float",
    }


def test_random_configs_hold_only_the_active_scope():
    search = make_search_method(spec())
    configs = [search.suggest(n, []) for n in range(40)]
    for config in configs:
        assert ("layers" in config) == (config["model_type"] == "mlp")
        assert ("width" in config) == (config["model_type"] == "wide")
        assert 1e-4 <= config["optimizer"]["lr"] <= 1e-1
        assert config["activation"] == "relu" and config["dropout"] in (0.0, 0.2, 0.4)
    assert {c["model_type"] for c in configs} == {"mlp", "wide"}
    assert {c["width"] for c in configs if "width" in c} <= {64, 128, 192, 256}


def test_log_sampling_is_uniform_in_log_space():
    search = make_search_method(spec())
    lrs = [search.suggest(n, [])["optimizer"]["lr"] for n in range(400)]
    below_geometric_middle = sum(lr < 10**-2.5 for lr in lrs) / len(lrs)
    assert abs(below_geometric_middle - 0.5) < 0.08


def test_spec_parameters_override_the_hypermodel_and_the_rest_is_searched():
    parameters = {
        "batch_norm": {"value": True},
        "optimizer": {"parameters": {"lr": {"value": 0.5}}},
    }
    search = make_search_method(spec(parameters=parameters))
    configs = [search.suggest(n, []) for n in range(20)]
    assert all(c["batch_norm"] is True and c["optimizer"] == {"lr": 0.5} for c in configs)
    assert {c["model_type"] for c in configs} == {"mlp", "wide"}


def test_grid_refuses_a_continuous_hypermodel_float_with_its_path():
    problems = check_search_space(spec(method="grid", hypermodel=f"{HERE}:build_continuous"))
    assert [p.path for p in problems] == ["parameters", "parameters"]
    assert "step" in problems[0].message


def test_grid_counts_conditional_combinations():
    parameters = {"optimizer": {"parameters": {"lr": {"values": [0.1, 0.01]}}}}
    search = make_search_method(spec(method="grid", parameters=parameters))
    configs = [search.suggest(n, []) for n in range(100)]
    configs = [c for c in configs if c is not None]
    # lr 2 x model_type (mlp: 3 layers + wide: 4 widths) x batch_norm 2 x dropout 3.
    assert len(configs) == 2 * 7 * 2 * 3
    assert len({repr(sorted(c.items())) for c in configs}) == len(configs)


def test_missing_hypermodel_without_parameters_is_a_problem_at_trial_hypermodel():
    problems = check_search_space(spec(hypermodel="no_such_module:build"))
    assert [p.path for p in problems] == ["trial.hypermodel"]
    assert "no_such_module" in problems[0].message


def test_tpe_respects_conditional_scopes():
    search = make_search_method(spec(method="tpe"))
    for number in range(15):
        config = search.suggest(number, [])
        assert ("layers" in config) == (config["model_type"] == "mlp")


def test_a_suggested_config_builds_the_digits_model_with_its_values():
    search = make_search_method(spec(hypermodel="ktsweep.examples.digits:build_model"))
    config = search.suggest(0, [])
    assert set(config) == {"units", "dropout", "learning_rate"}
    from ktsweep.examples.digits import build_model

    model = build_model(hyperparameters_for(config))
    assert model.layers[0].units == config["units"]
