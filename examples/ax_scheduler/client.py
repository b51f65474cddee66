"""Scheduler code for a `method: custom` sweep with `scheduler: {engine: ax}`.

The controller imports this file in a child process of its own (never in its own process) and
calls the functions the spec names:

- `optimizer()` returns the `ax.Client` that suggests the trials, made with the options you want
  (here, its random seed). Return it before `configure_experiment`: ktsweep configures the
  experiment with `search_space()`'s parameters and the objectives with the sweep's goals
  (`metric`, or `metrics`).
- `search_space()` returns the experiment's parameters as Ax parameter configs; here, those of
  the digits MLP (`ktsweep.examples.digits:build_model`). Their names are the trial's
  hyperparameters.

See `sweep.yaml` next to this file.
"""

from __future__ import annotations

from ax import ChoiceParameterConfig, Client, RangeParameterConfig


def optimizer() -> Client:
    """A seeded Ax client: quasi-random (Sobol) trials first, then Bayesian optimisation."""
    return Client(random_seed=7)


def search_space() -> list[RangeParameterConfig | ChoiceParameterConfig]:
    """The digits MLP's width, dropout and learning rate."""
    return [
        ChoiceParameterConfig(
            name="units", values=[16, 32, 64, 128], parameter_type="int", is_ordered=True
        ),
        RangeParameterConfig(name="dropout", bounds=(0.0, 0.5), parameter_type="float"),
        RangeParameterConfig(
            name="learning_rate", bounds=(1e-3, 3e-2), parameter_type="float", scaling="log"
        ),
    ]
