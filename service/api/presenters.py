"""Turning stored rows into API schemas."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

import orjson
from fastapi.responses import Response
from sqlalchemy.orm import Session

from ktsweep.service import sweeps as store
from ktsweep.service.models import Sweep, Trial
from ktsweep.service.schemas import (
    FrontTrialOut,
    ObjectiveOut,
    ParetoFrontOut,
    SweepOut,
    TrialOut,
)


def trial_out(trial: Trial) -> TrialOut:
    return TrialOut.model_validate(trial)


def pareto_front_out(sweep: Sweep, front: list[tuple[Trial, dict[str, float]]]) -> ParetoFrontOut:
    objectives = store.sweep_objectives(sweep) or []
    return ParetoFrontOut(
        objectives=[ObjectiveOut(name=o.name, goal=o.goal) for o in objectives],
        front=[
            FrontTrialOut.model_validate({**trial_out(trial).model_dump(), "objectives": values})
            for trial, values in front
        ],
    )


def sweep_out(session: Session, sweep: Sweep) -> SweepOut:
    best = store.best_trial(session, sweep)
    front = store.pareto_front_trials(session, sweep)
    return SweepOut(
        id=sweep.id,
        name=sweep.name,
        state=sweep.state,
        spec=sweep.spec,
        trial_counts=store.trial_counts(session, sweep.id),
        best_trial=trial_out(best) if best else None,
        pareto_front_size=None if front is None else len(front),
        warm_start=sweep.warm_start,
        created_at=sweep.created_at,
        finished_at=sweep.finished_at,
    )


# The hot read paths build TrialOut's JSON straight from rows (`store.TRIAL_OUT_COLUMNS`):
# the same document pydantic would write, at a fraction of the cost.


def trial_out_json(row: dict[str, Any]) -> dict[str, Any]:
    """`TrialOut` of a row, as JSON-ready values (metrics as floats, as the schema says)."""
    row["metrics"] = _float_metrics(row["metrics"])
    return row


def trial_detail_json(row: dict[str, Any], history: list[Any]) -> dict[str, Any]:
    """`TrialDetail` of a trial's row and its (step, metrics) history rows."""
    detail = trial_out_json(row)
    detail["history"] = [
        {"step": step, "metrics": _float_metrics(metrics)} for step, metrics in history
    ]
    return detail


def _float_metrics(metrics: dict[str, Any] | None) -> dict[str, float | None]:
    return {
        name: None if value is None else float(value) for name, value in (metrics or {}).items()
    }


class FastJSONResponse(Response):
    """JSON by orjson; text orjson cannot encode (a lone surrogate) falls back to escaped ASCII.

    Timestamps are written as pydantic writes them (`2026-01-02T03:04:05.123456Z`).
    """

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content, option=orjson.OPT_UTC_Z)
        except TypeError:
            return json.dumps(
                _plain(content), ensure_ascii=True, allow_nan=False, default=_isoformat
            ).encode("ascii")


def _isoformat(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _plain(value: Any) -> Any:
    """Non-finite floats as null, as orjson writes them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value
