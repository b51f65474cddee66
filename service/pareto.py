"""Several objectives at once: a trial's objective values and the Pareto front of a sweep.

One place for the rule every part of the controller uses (the search method learning from a
trial, the sweep ending at its targets, `GET /sweeps/{id}/best`): a trial's value of each
objective is its final value of that metric, and the front is what Optuna's
`study.best_trials` holds, the trials no other trial dominates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ktsweep.service.spec import ObjectiveSpec


def objective_values(
    metrics: dict[str, Any] | None,
    objectives: Sequence[ObjectiveSpec],
    history: Sequence[dict[str, Any]] = (),
) -> list[float] | None:
    """A trial's value of each objective, in the order of `objectives`, or None when one is
    missing.

    Each value is the trial's final metric of that name (its result's `metrics`, where the
    worker also records `model/parameters` and `model/fit_time_s`), else the latest finite
    value it reported in `history`.

    Args:
        metrics: The trial's final metrics.
        objectives: The sweep's objectives (`spec.metrics`).
        history: The trial's reports, `{"step", "metrics"}` each, oldest first.
    """
    values = []
    for objective in objectives:
        value = (metrics or {}).get(objective.name)
        if not _finite(value):
            value = next(
                (
                    entry["metrics"][objective.name]
                    for entry in reversed(history)
                    if _finite((entry.get("metrics") or {}).get(objective.name))
                ),
                None,
            )
        if value is None:
            return None
        values.append(float(value))
    return values


def dominates(
    first: Sequence[float], second: Sequence[float], objectives: Sequence[ObjectiveSpec]
) -> bool:
    """Whether `first` dominates `second`: at least as good in every objective and better in
    one (Optuna's definition, each objective by its goal)."""
    better = False
    for a, b, objective in zip(first, second, objectives, strict=True):
        if objective.goal == "maximize":
            a, b = -a, -b
        if a > b:
            return False
        better = better or a < b
    return better


def pareto_front(
    points: Sequence[tuple[Any, Sequence[float]]], objectives: Sequence[ObjectiveSpec]
) -> list[Any]:
    """The items of `(item, values)` pairs that no other pair dominates, in their order.

    Items with equal values are all on the front, as in Optuna's `study.best_trials`.
    """
    return [
        item
        for item, values in points
        if not any(dominates(other, values, objectives) for _, other in points)
    ]


def meets_targets(values: Sequence[float], objectives: Sequence[ObjectiveSpec]) -> bool:
    """Whether `values` meet every objective's `target` (objectives without one always do);
    False when no objective has a target."""
    if all(objective.target is None for objective in objectives):
        return False
    for value, objective in zip(values, objectives, strict=True):
        if objective.target is None:
            continue
        if objective.goal == "maximize" and value < objective.target:
            return False
        if objective.goal == "minimize" and value > objective.target:
            return False
    return True


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
