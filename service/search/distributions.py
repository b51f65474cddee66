"""W&B's parameter distributions, each as a map from a quantile in [0, 1] to a value.

Every distribution is sampled the way W&B's sweep engine samples it: draw `u ~ U(0, 1)` and take
the distribution's quantile function (`ppf`) at `u`. Search methods that model the objective
(bayes, tpe) search in the same unit space, so every distribution, bounded or not, is searchable.

W&B's meanings, per distribution:

- `int_uniform`: integers `min..max`, both included. `uniform`: reals in `[min, max]`.
- `log_uniform`: `exp(U(min, max))` (`min`/`max` are natural-log exponents).
  `log_uniform_values`: log-uniform between the values `min` and `max`.
- `inv_log_uniform`: `exp(-U(min, max))`. `inv_log_uniform_values`: `1/X` where `log(X)` is uniform
  between `log(1/max)` and `log(1/min)`, so values lie in `[min, max]`.
- `normal`: N(mu, sigma). `log_normal`: `exp(N(mu, sigma))`. `beta`: Beta(a, b).
- `q_*`: the value rounded to a multiple of `q` (`round(x / q) * q`); an integer when `q` is
  written as an integer, a float otherwise (W&B's default `q` is 1.0).
- `categorical_w_probabilities`: value `i` with probability `probabilities[i]`.
"""

from __future__ import annotations

import math
import random
from typing import Any

from scipy import stats

from ktsweep.service.spec import ParameterSpec

# Unbounded distributions have infinite quantiles at 0 and 1; searchers may propose the edges.
_EDGE = 1e-9


def ppf(parameter: ParameterSpec, u: float) -> Any:
    """The value of a (non-nested) parameter at quantile `u` in [0, 1]."""
    distribution = parameter.resolved_distribution()
    low, high = parameter.min, parameter.max
    match distribution:
        case "constant":
            return parameter.value
        case "categorical":
            return parameter.values[_index(u, len(parameter.values))]
        case "categorical_w_probabilities":
            cumulative = 0.0
            for value, probability in zip(
                parameter.values, parameter.probabilities or [], strict=True
            ):
                cumulative += probability
                if u < cumulative:
                    return value
            return parameter.values[-1]
        case "int_uniform":
            return int(low) + _index(u, int(high) - int(low) + 1)
        case "uniform":
            return _lerp(low, high, u)
        case "q_uniform":
            return _quantize(_lerp(low, high, u), parameter.q)
        case "log_uniform":
            return math.exp(_lerp(low, high, u))
        case "q_log_uniform":
            return _quantize(math.exp(_lerp(low, high, u)), parameter.q)
        case "log_uniform_values":
            return math.exp(_lerp(math.log(low), math.log(high), u))
        case "q_log_uniform_values":
            return _quantize(math.exp(_lerp(math.log(low), math.log(high), u)), parameter.q)
        case "inv_log_uniform":
            return math.exp(-_lerp(low, high, 1.0 - u))
        case "inv_log_uniform_values":
            return math.exp(-_lerp(-math.log(high), -math.log(low), 1.0 - u))
        case "normal":
            return _normal(parameter, u)
        case "q_normal":
            return _quantize(_normal(parameter, u), parameter.q)
        case "log_normal":
            return math.exp(_normal(parameter, u))
        case "q_log_normal":
            return _quantize(math.exp(_normal(parameter, u)), parameter.q)
        case "beta":
            return float(stats.beta.ppf(u, parameter.a, parameter.b))
        case "q_beta":
            return _quantize(float(stats.beta.ppf(u, parameter.a, parameter.b)), parameter.q)
    raise ValueError(f"unknown distribution {distribution!r}")


def cdf(parameter: ParameterSpec, value: Any) -> float:
    """The quantile in [0, 1] at which `ppf` gives `value` (its inverse, up to rounding).

    A categorical value or an integer maps to the middle of the quantiles that give it; a
    quantized value to the quantile of the value itself. A number `ppf` cannot give maps to the
    nearest end; a categorical value not among `values` raises `ValueError`.
    """
    distribution = parameter.resolved_distribution()
    low, high = parameter.min, parameter.max
    match distribution:
        case "constant":
            return 0.5
        case "categorical":
            return _clip((parameter.values.index(value) + 0.5) / len(parameter.values))
        case "categorical_w_probabilities":
            probabilities = parameter.probabilities or []
            index = parameter.values.index(value)
            return _clip(sum(probabilities[:index]) + probabilities[index] / 2)
        case "int_uniform":
            count = int(high) - int(low) + 1
            return _clip((round(value) - int(low) + 0.5) / count)
        case "uniform" | "q_uniform":
            return _unlerp(low, high, value)
        case "log_uniform" | "q_log_uniform":
            return _unlerp(low, high, _log(value))
        case "log_uniform_values" | "q_log_uniform_values":
            return _unlerp(math.log(low), math.log(high), _log(value))
        case "inv_log_uniform":
            return 1.0 - _unlerp(low, high, -_log(value))
        case "inv_log_uniform_values":
            return 1.0 - _unlerp(-math.log(high), -math.log(low), -_log(value))
        case "normal" | "q_normal":
            return _clip(float(stats.norm.cdf(value, loc=parameter.mu, scale=parameter.sigma)))
        case "log_normal" | "q_log_normal":
            return _clip(
                float(stats.norm.cdf(_log(value), loc=parameter.mu, scale=parameter.sigma))
            )
        case "beta" | "q_beta":
            return _clip(float(stats.beta.cdf(value, parameter.a, parameter.b)))
    raise ValueError(f"unknown distribution {distribution!r}")


def sample_parameters(parameters: dict[str, ParameterSpec], rng: random.Random) -> dict[str, Any]:
    """Draw one configuration; nested `parameters` come out as nested dicts, as in W&B."""
    return {name: sample_parameter(parameter, rng) for name, parameter in parameters.items()}


def sample_parameter(parameter: ParameterSpec, rng: random.Random) -> Any:
    """Draw one value of one parameter (a dict for nested parameters)."""
    if parameter.parameters is not None:
        return sample_parameters(parameter.parameters, rng)
    return ppf(parameter, rng.random())


def grid_values(parameter: ParameterSpec) -> list[Any]:
    """The finite list of values a grid search walks for one (non-nested) parameter."""
    distribution = parameter.resolved_distribution()
    if distribution == "constant":
        return [parameter.value]
    if distribution in ("categorical", "categorical_w_probabilities"):
        return list(parameter.values)
    if distribution == "int_uniform":
        return list(range(int(parameter.min), int(parameter.max) + 1))
    raise ValueError(
        f"grid search cannot enumerate a '{distribution}' parameter; give `values` instead."
    )


def _index(u: float, count: int) -> int:
    return min(int(u * count), count - 1)


def _lerp(low: float, high: float, u: float) -> float:
    return low + (high - low) * u


def _unlerp(low: float, high: float, value: float) -> float:
    return _clip((value - low) / (high - low))


def _clip(u: float) -> float:
    return min(max(u, 0.0), 1.0)


def _log(value: float) -> float:
    return math.log(value) if value > 0 else -math.inf


def _normal(parameter: ParameterSpec, u: float) -> float:
    u = min(max(u, _EDGE), 1.0 - _EDGE)
    return float(stats.norm.ppf(u, loc=parameter.mu, scale=parameter.sigma))


def _quantize(value: float, q: int | float) -> int | float:
    quantized = round(value / q) * q
    # W&B returns integers only when `q` itself is an integer.
    if isinstance(q, int) and not isinstance(q, bool):
        return int(quantized)
    return float(quantized)
