"""Warm starts: a new sweep's search method learns the completed trials of earlier sweeps.

A spec may name earlier sweeps (`prior_sweeps: [id, ...]`, in the spirit of W&B's
`prior_runs`). Before its first suggestion, the new sweep's search method is told their
completed trials, so bayes, tpe and `custom` (Optuna, Ax) start from what those sweeps found
instead of from scratch. Prior trials teach the method and nothing else: they are not trials
of the new sweep, so they count toward no `run_cap`, no `target`, no stopping rule and no
best trial.

Parameters are matched by name: a prior trial's configuration is read in the new sweep's
space, and parameters the new space does not have are dropped. A prior trial the new space
cannot hold (a value outside a parameter's range or values, or a parameter of the new space
that it never set) is skipped and counted, as is one without the new sweep's metric(s).

How a controller uses it, where it builds a sweep's search method::

    method = make_search_method(spec)
    if spec.prior_sweeps:
        prior = prior_records(session, spec.prior_sweeps, finished_before=sweep.created_at)
        report = warm_start(method, spec, prior)
        store_warm_start(session, sweep.id, report.as_json(spec.prior_sweeps))  # for the API
    method.restore(records)  # after a restart: the warm start comes first, as it did then

At submission, `missing_prior_sweeps(session, spec)` lists the ids that name no sweep (one
`SpecProblem` each, a 422).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from ktsweep.service.pareto import objective_values
from ktsweep.service.search.base import SearchMethod, TrialRecord
from ktsweep.service.search.space import Dimension, SearchSpace, flatten, nest
from ktsweep.service.spec import (
    METHODS_WITH_PRIOR_SWEEPS,
    SpecProblem,
    SweepSpec,
    objectives_of,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

# The most prior trials one sweep's method is told: the ones that ended last. Model-based
# methods fit every trial they know on each suggestion (a Gaussian process in cubic time).
MAX_PRIOR_TRIALS = 1000


@dataclass
class PriorTrial:
    """A completed trial of an earlier sweep, as the new sweep's method learns it.

    Attributes:
        hyperparameters: Its configuration in the new sweep's space (nested, as suggested).
        values: Its final value of each of the new sweep's objectives (`metric`, or `metrics`
            in order).
    """

    hyperparameters: dict[str, Any]
    values: list[float]


@dataclass
class WarmStartReport:
    """What a warm start told the search method, and what it skipped.

    Attributes:
        told: Prior trials the method learned.
        skipped_outside_space: Prior trials with a value the new space cannot take (outside a
            range, not among a parameter's values), or without a parameter the new space has.
        skipped_without_objective: Prior trials that never recorded the new sweep's metric(s).
    """

    told: int = 0
    skipped_outside_space: int = 0
    skipped_without_objective: int = 0

    @property
    def skipped(self) -> int:
        return self.skipped_outside_space + self.skipped_without_objective

    def as_json(self, prior_sweeps: list[str]) -> dict[str, Any]:
        """The report as the API shows it (`GET /sweeps/{id}`'s `warm_start`)."""
        return {
            "prior_sweeps": list(prior_sweeps),
            "learned": self.told,
            "skipped_outside_space": self.skipped_outside_space,
            "skipped_without_objective": self.skipped_without_objective,
        }


def warm_start(
    method: SearchMethod, spec: SweepSpec, prior_trials: list[TrialRecord]
) -> WarmStartReport:
    """Tell `method`, before its first suggestion, the prior trials its space can hold.

    Args:
        method: The new sweep's search method, just made (before `restore` and `suggest`).
        spec: The new sweep's spec (its objectives say which metrics the method learns).
        prior_trials: The earlier sweeps' completed trials (`prior_records`).

    Returns:
        How many prior trials the method learned, and how many it skipped and why.
    """
    placed, report = place_prior_trials(method.space, spec, prior_trials)
    learn = getattr(method, "learn_prior_trials", None)
    # Grid and hyperband take no prior trials (the spec refuses `prior_sweeps` there), nor
    # does a method whose space user code defines (`learns_prior_trials` False): it has no
    # space to read them in.
    if (
        learn is None
        or spec.method not in METHODS_WITH_PRIOR_SWEEPS
        or not getattr(method, "learns_prior_trials", True)
    ):
        return WarmStartReport(
            skipped_outside_space=report.skipped_outside_space,
            skipped_without_objective=report.skipped_without_objective,
        )
    learn(placed)
    if report.skipped:
        log.info(
            "warm start: learned %d prior trials, skipped %d outside the space and %d without "
            "the objective",
            report.told,
            report.skipped_outside_space,
            report.skipped_without_objective,
        )
    return report


def place_prior_trials(
    space: SearchSpace, spec: SweepSpec, prior_trials: list[TrialRecord]
) -> tuple[list[PriorTrial], WarmStartReport]:
    """The completed prior trials read in `space`, in the order given, and the count of those
    skipped (see `WarmStartReport`)."""
    objectives = objectives_of(spec)
    report = WarmStartReport()
    placed: list[PriorTrial] = []
    for record in prior_trials:
        if record.state != "completed":
            continue
        config = config_in_space(space, record.hyperparameters)
        if config is None:
            report.skipped_outside_space += 1
            continue
        values = objective_values(record.metrics, objectives, record.history)
        if values is None:
            report.skipped_without_objective += 1
            continue
        placed.append(PriorTrial(hyperparameters=config, values=values))
    report.told = len(placed)
    return placed, report


def config_in_space(space: SearchSpace, config: dict[str, Any]) -> dict[str, Any] | None:
    """`config` as a configuration of `space` (its active dimensions, matched by name), or
    None when the space cannot hold it.

    A dimension the configuration does not name makes it unplaceable, unless the dimension
    is constant (it then takes the constant); a value the dimension cannot take does too,
    a constant's other value included. Names the space does not have are dropped.
    """
    flat = flatten(config)
    chosen: dict[str, Any] = {}
    for dimension in space.dimensions:
        if not dimension.is_active(chosen):
            continue
        if dimension.name not in flat:
            if not dimension.is_constant:
                return None
            chosen[dimension.name] = dimension.from_unit(0.0)
            continue
        value = flat[dimension.name]
        if not takes_value(dimension, value):
            return None
        chosen[dimension.name] = value
    return nest(chosen)


def takes_value(dimension: Dimension, value: Any) -> bool:
    """Whether `dimension` can give `value`: one of its values (categorical or constant), or
    a number its quantile map gives back (inside its range, on its grid for `q` or a step)."""
    if dimension.is_constant:
        return _same(dimension.from_unit(0.0), value)
    if dimension.choices is not None:
        return any(_same(choice, value) for choice in dimension.choices)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    try:
        back = dimension.from_unit(dimension.to_unit(value))
    except (TypeError, ValueError, OverflowError):
        return False
    return math.isclose(float(back), float(value), rel_tol=1e-6, abs_tol=1e-12)


def _same(a: Any, b: Any) -> bool:
    # `True == 1` in Python; a boolean parameter and a number are different values here.
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def prior_records(
    session: Session,
    sweep_ids: list[str],
    finished_before: datetime | None = None,
    limit: int = MAX_PRIOR_TRIALS,
) -> list[TrialRecord]:
    """The completed trials of the sweeps `sweep_ids`, with their reports, oldest first.

    Reads the database only. At most `limit` trials (default `MAX_PRIOR_TRIALS`, 1000): the
    ones that ended last.

    Args:
        session: A SQLAlchemy session on the controller's database.
        sweep_ids: The spec's `prior_sweeps`.
        finished_before: Only trials that ended before this time: pass the new sweep's
            `created_at`, so a controller restarted later learns the same prior trials even
            if a prior sweep has run on since (a restart then suggests what it would have).
        limit: The most trials to return.
    """
    from ktsweep.service.models import Trial, TrialReport

    if not sweep_ids:
        return []
    query = select(Trial).where(Trial.sweep_id.in_(sweep_ids), Trial.state == "completed")
    if finished_before is not None:
        query = query.where(Trial.finished_at < finished_before)
    trials = session.scalars(
        query.order_by(Trial.finished_at.desc(), Trial.sweep_id, Trial.number.desc()).limit(limit)
    ).all()
    trials = list(reversed(trials))
    histories: dict[str, list[dict[str, Any]]] = {trial.id: [] for trial in trials}
    ids = list(histories)
    for start in range(0, len(ids), 500):  # bounded IN lists
        rows = session.execute(
            select(TrialReport.trial_id, TrialReport.step, TrialReport.metrics)
            .where(TrialReport.trial_id.in_(ids[start : start + 500]))
            .order_by(TrialReport.step, TrialReport.id)
        )
        for trial_id, step, metrics in rows:
            histories[trial_id].append({"step": step, "metrics": metrics})
    return [
        TrialRecord(
            number=trial.number,
            hyperparameters=trial.hyperparameters,
            state=trial.state,
            objective=trial.objective,
            epochs=trial.epochs,
            history=histories[trial.id],
            finished_at=trial.finished_at,
            metrics=trial.metrics or {},
        )
        for trial in trials
    ]


def store_warm_start(session: Session, sweep_id: str, shown: dict[str, Any]) -> None:
    """Record on the sweep what its warm start learned and skipped (`Sweep.warm_start`;
    `shown` is `WarmStartReport.as_json`), so every API process shows it; the caller commits.
    A restarted controller writes it again, with the same counts (`prior_records` reads the
    same trials)."""
    from ktsweep.service.models import Sweep

    session.execute(
        update(Sweep)
        .where(Sweep.id == sweep_id)
        .values(warm_start=shown)
        .execution_options(synchronize_session=False)
    )


def missing_prior_sweeps(session: Session, spec: SweepSpec) -> list[SpecProblem]:
    """One problem per id in the spec's `prior_sweeps` that names no sweep (for a 422 at
    submission); empty when every one exists or the spec names none."""
    from ktsweep.service.models import Sweep

    ids = [sweep_id for sweep_id in spec.prior_sweeps or [] if isinstance(sweep_id, str)]
    if not ids:
        return []
    found = set(session.scalars(select(Sweep.id).where(Sweep.id.in_(ids))).all())
    return [
        SpecProblem(
            path=f"prior_sweeps.{index}",
            message=f"there is no sweep '{sweep_id}'; name an earlier sweep of this controller "
            "(`GET /sweeps` lists them), or remove it.",
        )
        for index, sweep_id in enumerate(spec.prior_sweeps or [])
        if isinstance(sweep_id, str) and sweep_id not in found
    ]
