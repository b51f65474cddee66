"""The Optuna internals ktsweep.service.compat.optuna relies on: fails when Optuna moves them."""

import optuna

from ktsweep.service.compat.optuna import nsga2_generation_key


def test_nsga2_reads_generations_from_the_system_attribute():
    sampler = optuna.samplers.NSGAIISampler(population_size=2, seed=0)
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=sampler)
    distributions = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    for index, x in enumerate([0.1, 0.2, 0.3]):
        study.add_trial(
            optuna.trial.create_trial(
                params={"x": x},
                distributions=distributions,
                values=[x, x],
                system_attrs={nsga2_generation_key(): index // 2},
            )
        )
    assert [t.params["x"] for t in sampler.get_population(study, 0)] == [0.1, 0.2], (
        "NSGAIISampler no longer groups trials by the system attribute "
        f"'{nsga2_generation_key()}'; update ktsweep/service/compat/optuna.py"
    )
    assert [t.params["x"] for t in sampler.get_population(study, 1)] == [0.3]
