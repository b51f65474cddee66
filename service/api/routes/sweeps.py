"""Routes for sweeps: submit, list, read, lifecycle (pause, resume, cancel), best, trials."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from ktsweep.service import sweeps as store
from ktsweep.service.api.deps import ReadAccess, SchedulerDep, SessionDep, WriteAccess
from ktsweep.service.api.presenters import (
    FastJSONResponse,
    pareto_front_out,
    sweep_out,
    trial_out,
    trial_out_json,
)
from ktsweep.service.entry_policy import check_entry_points
from ktsweep.service.models import SweepState
from ktsweep.service.schemas import (
    ErrorOut,
    ParetoFrontOut,
    ProblemList,
    SweepList,
    SweepOut,
    TrialList,
    TrialOut,
)
from ktsweep.service.search import check_search_space
from ktsweep.service.search.grid_search import check_grid_size
from ktsweep.service.search.user_code_search import check_scheduler_code
from ktsweep.service.search.warm_start import missing_prior_sweeps
from ktsweep.service.spec import SpecError, SpecProblem, SweepSpec, load_spec_text, parse_spec

router = APIRouter(prefix="/sweeps", tags=["sweeps"])

SPEC_SCHEMA = SweepSpec.model_json_schema(ref_template="#/components/schemas/{model}")
_SPEC_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/SweepSpec"}},
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}

Limit = Annotated[int, Query(ge=1, le=500, description="Items per page (max 500).")]
Cursor = Annotated[str | None, Query(description="`next_cursor` of the previous page.")]
SweepStateFilter = Annotated[SweepState | None, Query(description="Only sweeps in this state.")]
# The states a trial is stored in (`lost` and `withdrawn` only end an attempt).
StoredTrialState = Literal["pending", "running", "completed", "failed", "stopped", "cancelled"]
TrialStateFilter = Annotated[
    StoredTrialState | None, Query(description="Only trials in this state.")
]
TrialOrder = Annotated[
    Literal["number", "metric"],
    Query(description="`number` (submission order) or `metric` (best first, by the goal)."),
]

_AUTH = {401: {"model": ErrorOut}}
_FOUND = {**_AUTH, 404: {"model": ErrorOut}}
_LIFECYCLE = {**_FOUND, 409: {"model": ErrorOut}}


def reject_unencodable_text(data: Any, path: str = "") -> None:
    """Refuse strings that cannot be stored as UTF-8 (lone surrogates from JSON escapes)."""
    if isinstance(data, str):
        try:
            data.encode("utf-8")
        except UnicodeEncodeError:
            message = (
                "this text holds a lone surrogate (an invalid \\uD800-\\uDFFF escape); fix it."
            )
            raise SpecError([SpecProblem(path=path, message=message)]) from None
    elif isinstance(data, dict):
        for key, value in data.items():
            reject_unencodable_text(key, path)
            reject_unencodable_text(value, f"{path}.{key}" if path else str(key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            reject_unencodable_text(value, f"{path}.{index}" if path else str(index))


def _parse_submission(body: bytes, settings: Any) -> tuple[Any, SweepSpec]:
    """The submitted text as data and as a spec (on a worker thread: a large spec takes time)."""
    raw = load_spec_text(body, max_depth=settings.max_spec_depth, max_nodes=settings.max_spec_nodes)
    reject_unencodable_text(raw)
    return raw, parse_spec(raw, max_depth=settings.max_spec_depth)


@router.post(
    "",
    status_code=201,
    response_model=SweepOut,
    responses={**_AUTH, 422: {"model": ProblemList}},
    openapi_extra=_SPEC_BODY,
    dependencies=[WriteAccess],
)
async def submit_sweep(request: Request, session: SessionDep, scheduler: SchedulerDep):
    """Submit a sweep spec (JSON, or YAML with `Content-Type: application/yaml`)."""
    settings = request.app.state.settings
    body = await request.body()
    raw, spec = await anyio.to_thread.run_sync(
        _parse_submission, body, settings, limiter=request.app.state.spec_parsers
    )
    check_entry_points(spec, settings)
    # `scheduler.source`: inside an allowed folder, and imported only in a child process.
    problems = await run_in_threadpool(check_scheduler_code, spec, settings)
    problems += missing_prior_sweeps(session, spec)
    if problems:
        raise SpecError(problems)
    if spec.method == "grid":
        problems = check_grid_size(spec, settings.max_grid_size)
        if problems:
            raise SpecError(problems)
    # May build the hypermodel (in a child process), whose `build(hp)` may widen a grid.
    problems = await run_in_threadpool(check_search_space, spec, settings.max_grid_size)
    if problems:
        raise SpecError(problems)
    sweep = store.create_sweep(session, spec, raw)
    scheduler.sweep_submitted(sweep.id)
    return sweep_out(session, sweep)


@router.get(
    "",
    response_model=SweepList,
    responses={**_AUTH, 422: {"model": ProblemList}},
    dependencies=[ReadAccess],
)
def list_sweeps(
    session: SessionDep, state: SweepStateFilter = None, cursor: Cursor = None, limit: Limit = 50
):
    """Sweeps, newest first."""
    sweeps, next_cursor = store.list_sweeps(
        session, state=state.value if state else None, cursor=cursor, limit=limit
    )
    return SweepList(items=[sweep_out(session, s) for s in sweeps], next_cursor=next_cursor)


@router.get("/{sweep_id}", response_model=SweepOut, responses=_FOUND, dependencies=[ReadAccess])
def get_sweep(sweep_id: str, session: SessionDep):
    """A sweep: spec, state, trial counts by state, best trial so far."""
    return sweep_out(session, store.get_sweep(session, sweep_id))


@router.post(
    "/{sweep_id}/pause", response_model=SweepOut, responses=_LIFECYCLE, dependencies=[WriteAccess]
)
def pause_sweep(sweep_id: str, session: SessionDep, scheduler: SchedulerDep):
    """Start no new trials; running trials finish."""
    return sweep_out(session, scheduler.pause_sweep(session, sweep_id))


@router.post(
    "/{sweep_id}/resume", response_model=SweepOut, responses=_LIFECYCLE, dependencies=[WriteAccess]
)
def resume_sweep(sweep_id: str, session: SessionDep, scheduler: SchedulerDep):
    """Start trials again after a pause."""
    return sweep_out(session, scheduler.resume_sweep(session, sweep_id))


@router.post(
    "/{sweep_id}/cancel", response_model=SweepOut, responses=_LIFECYCLE, dependencies=[WriteAccess]
)
def cancel_sweep(sweep_id: str, session: SessionDep, scheduler: SchedulerDep):
    """End the sweep: running trials are stopped and marked `cancelled`."""
    return sweep_out(session, scheduler.cancel_sweep(session, sweep_id))


@router.get(
    "/{sweep_id}/trials",
    response_model=TrialList,
    responses={**_FOUND, 422: {"model": ProblemList}},
    dependencies=[ReadAccess],
)
async def list_trials(
    sweep_id: str,
    request: Request,
    state: TrialStateFilter = None,
    order: TrialOrder = "number",
    cursor: Cursor = None,
    limit: Limit = 50,
):
    """A sweep's trials, by number or best metric first."""

    rows, next_cursor = await request.app.state.connections.read(
        store.list_trials,
        sweep_id,
        request.app.state.sweep_goals,
        state,
        order,
        cursor,
        limit,
    )
    items = [trial_out_json(row) for row in rows]
    return FastJSONResponse({"items": items, "next_cursor": next_cursor})


@router.get(
    "/{sweep_id}/best",
    response_model=TrialOut | ParetoFrontOut,
    responses=_LIFECYCLE,
    dependencies=[ReadAccess],
)
def get_best_trial(sweep_id: str, session: SessionDep):
    """The best finished trial: hyperparameters, metric, W&B run link, checkpoint.

    For a multi-objective sweep (`metrics`): the Pareto front, the finished trials no other
    trial dominates, each with its value of every objective. 409 for a sweep without a
    `metric` (a grid or random sweep may have none)."""
    sweep = store.get_sweep(session, sweep_id)
    front = store.pareto_front_trials(session, sweep)
    if front:
        return pareto_front_out(sweep, front)
    if front is None and store.metric_goal(sweep)[0] is None:
        raise store.ConflictError(
            f"sweep '{sweep_id}' has no metric, so no trial is best; its trials and what they "
            f"logged are at /api/v1/sweeps/{sweep_id}/trials. Give a sweep a `metric` to rank "
            "its trials."
        )
    trial = store.best_trial(session, sweep) if front is None else None
    if trial is None:
        what = "its metric" if front is None else "a value of every objective"
        raise store.NotFoundError(
            f"sweep '{sweep_id}' has no finished trial with {what} yet; try again later."
        )
    return trial_out(trial)
