"""A sweep's search space: W&B parameters and Keras Tuner hyperparameters behind one interface.

Every dimension maps a quantile `u` in [0, 1] to a value (`from_unit`), lists its values when it
has finitely many (`grid_values`), and says whether it is active for a configuration (Keras
Tuner's conditional scopes). Random search draws `u` uniformly; bayes and tpe search over `u`.

Names: a nested W&B parameter `optimizer.parameters.lr` is the dimension `optimizer/lr`, the name
Keras Tuner gives `hp.Float("lr")` inside `hp.name_scope("optimizer")`, so a spec's parameters
override the hyperparameters `build(hp)` declares under the same name. Configurations come out
nested by "/" (`{"optimizer": {"lr": ...}}`), as W&B nests them; the worker flattens them back.
"""

from __future__ import annotations

import abc
import math
import random
from collections.abc import Sequence
from typing import Any

from ktsweep.service.search import distributions
from ktsweep.service.spec import ParameterSpec, SweepSpec
from ktsweep.worker.trial_spec import flatten_config


class Dimension(abc.ABC):
    """One searchable (or constant) entry of the space."""

    name: str

    @abc.abstractmethod
    def from_unit(self, u: float) -> Any:
        """The value at quantile `u` in [0, 1]."""

    @abc.abstractmethod
    def to_unit(self, value: Any) -> float:
        """The quantile in [0, 1] of `value`: the inverse of `from_unit` (up to rounding)."""

    @abc.abstractmethod
    def grid_values(self) -> Sequence[Any]:
        """Every value, for grid search; raises `ValueError` for a continuous dimension."""

    @property
    def choices(self) -> list[Any] | None:
        """The unordered values of a categorical dimension, else None."""
        return None

    @property
    def is_constant(self) -> bool:
        return False

    def is_active(self, values: dict[str, Any]) -> bool:
        """Whether the dimension applies, given the (flat) values chosen so far."""
        return True

    @property
    def is_conditional(self) -> bool:
        """Whether `is_active` can ever be False."""
        return False


class WandbDimension(Dimension):
    """A W&B sweep parameter (one leaf of `parameters`)."""

    def __init__(self, name: str, parameter: ParameterSpec):
        self.name = name
        self.parameter = parameter
        self.distribution = parameter.resolved_distribution()

    def from_unit(self, u: float) -> Any:
        return distributions.ppf(self.parameter, u)

    def to_unit(self, value: Any) -> float:
        return distributions.cdf(self.parameter, value)

    def grid_values(self) -> Sequence[Any]:
        if self.distribution == "int_uniform":
            # A range, not a list: `min: 0, max: 1e15` must not cost a list of 1e15 values.
            return range(int(self.parameter.min), int(self.parameter.max) + 1)
        return distributions.grid_values(self.parameter)

    @property
    def choices(self) -> list[Any] | None:
        if self.distribution in ("categorical", "categorical_w_probabilities"):
            return list(self.parameter.values)
        return None

    @property
    def is_constant(self) -> bool:
        return self.distribution == "constant"

    def __repr__(self) -> str:
        return f"WandbDimension({self.name!r}, {self.distribution})"


class KerasTunerDimension(Dimension):
    """A hyperparameter declared by `build(hp)` (`hp.Int`, `hp.Float`, `hp.Choice`, ...)."""

    def __init__(self, hyperparameter: Any):
        self.hp = hyperparameter
        self.name = hyperparameter.name
        self.kind = type(hyperparameter).__name__

    def from_unit(self, u: float) -> Any:
        if self.kind == "Fixed":
            return self.hp.value
        return self.hp.prob_to_value(min(u, 1.0 - 1e-12))

    def to_unit(self, value: Any) -> float:
        if self.kind == "Fixed":
            return 0.5
        return min(max(float(self.hp.value_to_prob(value)), 0.0), 1.0)

    def grid_values(self) -> Sequence[Any]:
        if self.kind == "Fixed":
            return [self.hp.value]
        if self.kind == "Float" and self.hp.step is None:
            raise ValueError(
                f"grid search cannot enumerate hp.Float('{self.name}') without a `step`; give "
                "it a step, or override it in `parameters` with `values`."
            )
        return list(self.hp.values)

    @property
    def choices(self) -> list[Any] | None:
        if self.kind in ("Choice", "Boolean"):
            return list(self.hp.values)
        return None

    @property
    def is_constant(self) -> bool:
        return self.kind == "Fixed"

    def is_active(self, values: dict[str, Any]) -> bool:
        return all(condition.is_active(values) for condition in self.hp.conditions)

    @property
    def is_conditional(self) -> bool:
        return bool(self.hp.conditions)

    def __repr__(self) -> str:
        return f"KerasTunerDimension({self.name!r}, {self.kind})"


class SearchSpace:
    """The dimensions of a sweep, in order (a conditional one after the one it depends on).

    Args:
        dimensions: The dimensions, names unique.
    """

    def __init__(self, dimensions: list[Dimension]):
        self.dimensions = dimensions

    @classmethod
    def from_spec(cls, spec: SweepSpec, keras_tuner_space: Any = None) -> SearchSpace:
        """The space of a spec: its W&B `parameters`, plus the hyperparameters of
        `keras_tuner_space` (a `keras_tuner.HyperParameters`) that the parameters do not name."""
        wandb = list(_wandb_dimensions(spec.parameters or {}))
        named = {dimension.name for dimension in wandb}
        keras_tuner = []
        if keras_tuner_space is not None:
            keras_tuner = [
                KerasTunerDimension(hp) for hp in keras_tuner_space.space if hp.name not in named
            ]
        return cls([*wandb, *keras_tuner])

    def __len__(self) -> int:
        return len(self.dimensions)

    def config_from_units(self, units: dict[str, float]) -> dict[str, Any]:
        """The configuration at the quantiles `units` (one per dimension name; a missing one is
        drawn at 0.5), leaving out inactive dimensions; nested by "/"."""
        flat: dict[str, Any] = {}
        for dimension in self.dimensions:
            if dimension.is_active(flat):
                flat[dimension.name] = dimension.from_unit(units.get(dimension.name, 0.5))
        return nest(flat)

    def coordinates(self, config: dict[str, Any]) -> dict[str, int | float]:
        """Where a configuration lies in the space bayes and tpe search: per active, non-constant
        dimension, the index of its value (categorical) or its quantile (otherwise).

        The inverse of how those methods turn coordinates into a configuration, so a restarted
        controller can tell them the trials it finds in the database. A value the space cannot
        place (one no longer among a categorical's values) is left out.
        """
        flat = flatten(config)
        chosen: dict[str, Any] = {}
        coordinates: dict[str, int | float] = {}
        for dimension in self.dimensions:
            if not dimension.is_active(chosen) or dimension.name not in flat:
                continue
            value = chosen[dimension.name] = flat[dimension.name]
            if dimension.is_constant:
                continue
            try:
                if dimension.choices is not None:
                    coordinates[dimension.name] = dimension.choices.index(value)
                else:
                    coordinates[dimension.name] = dimension.to_unit(value)
            except (ValueError, TypeError):
                continue
        return coordinates

    def sample(self, rng: random.Random) -> dict[str, Any]:
        """One configuration drawn at random (every dimension's own distribution)."""
        flat: dict[str, Any] = {}
        for dimension in self.dimensions:
            if dimension.is_active(flat):
                flat[dimension.name] = dimension.from_unit(rng.random())
        return nest(flat)

    def grid(self) -> Sequence[dict[str, Any]]:
        """Every combination of values, in a fixed order (the first dimension varies slowest),
        inactive dimensions left out.

        Without conditional dimensions the grid is never built: each combination is computed
        from its index when asked for, so a grid of any size costs the memory of its values.

        Raises:
            ValueError: a dimension is continuous.
        """
        if not any(dimension.is_conditional for dimension in self.dimensions):
            return IndexedGrid(self.dimensions)
        combos: list[dict[str, Any]] = [{}]
        for dimension in self.dimensions:
            values = None
            grown: list[dict[str, Any]] = []
            for combo in combos:
                if not dimension.is_active(combo):
                    grown.append(combo)
                    continue
                values = dimension.grid_values() if values is None else values
                grown.extend({**combo, dimension.name: value} for value in values)
            combos = grown
        return [nest(combo) for combo in combos]

    def grid_size(self) -> int:
        """How many combinations `grid` has, without building it; with conditional dimensions,
        the most it can have (every dimension active).

        Raises:
            ValueError: a dimension is continuous.
        """
        return math.prod(len(dimension.grid_values()) for dimension in self.dimensions)

    def check_grid(self) -> list[str]:
        """Why a grid search over this space is impossible (empty when it is possible)."""
        problems = []
        for dimension in self.dimensions:
            try:
                dimension.grid_values()
            except ValueError as exc:
                problems.append(str(exc))
        return problems


class IndexedGrid(Sequence):
    """The Cartesian product of dimensions' values, each combination computed from its index.

    Combination `i` is `i` written in mixed radix, one digit per dimension (the last one varies
    fastest): the order `SearchSpace.grid` has always had.

    Args:
        dimensions: Unconditional dimensions, each with finitely many values.
    """

    def __init__(self, dimensions: list[Dimension]):
        self._names = [dimension.name for dimension in dimensions]
        self._values = [dimension.grid_values() for dimension in dimensions]
        self._size = math.prod(len(values) for values in self._values)

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        if not 0 <= index < self._size:
            raise IndexError(f"grid index {index} is out of range (size {self._size})")
        flat: dict[str, Any] = {}
        for name, values in zip(reversed(self._names), reversed(self._values), strict=True):
            index, digit = divmod(index, len(values))
            flat[name] = values[digit]
        return nest({name: flat[name] for name in self._names})


def _wandb_dimensions(parameters: dict[str, ParameterSpec], prefix: str = ""):
    for name, parameter in parameters.items():
        if parameter.parameters is not None:
            yield from _wandb_dimensions(parameter.parameters, f"{prefix}{name}/")
        else:
            yield WandbDimension(f"{prefix}{name}", parameter)


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """`{"a/b": 1, "c": 2}` -> `{"a": {"b": 1}, "c": 2}`."""
    config: dict[str, Any] = {}
    for name, value in flat.items():
        node = config
        *parents, leaf = name.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return config


# The inverse of `nest`: the worker flattens configs the same way for `hp` names.
flatten = flatten_config
