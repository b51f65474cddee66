"""Sampling of W&B sweep parameters, with W&B's meaning for every distribution."""

from __future__ import annotations

import math
import random
from typing import Any

from service.spec import ParameterSpec


def sample_parameters(parameters: dict[str, ParameterSpec], rng: random.Random) -> dict[str, Any]:
    """Draw one configuration; nested `parameters` come out as nested dicts, as in W&B."""
    return {name: sample_parameter(parameter, rng) for name, parameter in parameters.items()}


def sample_parameter(parameter: ParameterSpec, rng: random.Random) -> Any:
    """Draw one value of one parameter."""
    if parameter.parameters is not None:
        return sample_parameters(parameter.parameters, rng)
    distribution = parameter.resolved_distribution()
    low, high = parameter.min, parameter.max
    q = parameter.q if parameter.q is not None else 1.0
    mu = parameter.mu if parameter.mu is not None else 0.0
    sigma = parameter.sigma if parameter.sigma is not None else 1.0
    a = parameter.a if parameter.a is not None else 1.0
    b = parameter.b if parameter.b is not None else 1.0
    match distribution:
        case "constant":
            return parameter.value
        case "categorical":
            return rng.choice(parameter.values)
        case "categorical_w_probabilities":
            return rng.choices(parameter.values, weights=parameter.probabilities)[0]
        case "int_uniform":
            return rng.randint(int(low), int(high))
        case "uniform":
            return rng.uniform(low, high)
        case "q_uniform":
            return _quantize(rng.uniform(low, high), q)
        case "log_uniform":
            return math.exp(rng.uniform(low, high))
        case "q_log_uniform":
            return _quantize(math.exp(rng.uniform(low, high)), q)
        case "log_uniform_values":
            return math.exp(rng.uniform(math.log(low), math.log(high)))
        case "q_log_uniform_values":
            return _quantize(math.exp(rng.uniform(math.log(low), math.log(high))), q)
        case "inv_log_uniform":
            return math.exp(-rng.uniform(low, high))
        case "inv_log_uniform_values":
            return 1.0 / math.exp(rng.uniform(math.log(1.0 / high), math.log(1.0 / low)))
        case "normal":
            return rng.gauss(mu, sigma)
        case "q_normal":
            return _quantize(rng.gauss(mu, sigma), q)
        case "log_normal":
            return math.exp(rng.gauss(mu, sigma))
        case "q_log_normal":
            return _quantize(math.exp(rng.gauss(mu, sigma)), q)
        case "beta":
            return rng.betavariate(a, b)
        case "q_beta":
            return _quantize(rng.betavariate(a, b), q)
    raise ValueError(f"unknown distribution {distribution!r}")


def _quantize(value: float, q: float) -> float:
    quantized = round(value / q) * q
    return int(quantized) if float(q).is_integer() else quantized


def grid_values(parameter: ParameterSpec) -> list[Any]:
    """The finite list of values a grid search walks for one (non-nested) parameter."""
    distribution = parameter.resolved_distribution()
    if distribution == "constant":
        return [parameter.value]
    if distribution in ("categorical", "categorical_w_probabilities"):
        return list(parameter.values)
    if distribution == "int_uniform":
        return list(range(int(parameter.min), int(parameter.max) + 1))
    raise ValueError(f"grid search cannot enumerate a '{distribution}' parameter")
