"""Routes for sweeps: submit, list, read, best trial, trials."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from service import sweeps as store
from service.api.deps import SchedulerDep, SessionDep
from service.api.presenters import sweep_out, trial_out
from service.schemas import ErrorOut, ProblemList, SweepList, SweepOut, TrialList, TrialOut
from service.spec import SweepSpec, load_spec_text, parse_spec

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

Limit = Annotated[int, Query(ge=1, le=500)]


@router.post(
    "",
    status_code=201,
    response_model=SweepOut,
    responses={422: {"model": ProblemList}},
    openapi_extra=_SPEC_BODY,
)
async def submit_sweep(request: Request, session: SessionDep, scheduler: SchedulerDep):
    """Submit a sweep spec (JSON, or YAML with `Content-Type: application/yaml`)."""
    raw = load_spec_text(await request.body())
    spec = parse_spec(raw)
    sweep = store.create_sweep(session, spec, raw)
    scheduler.notify()
    return sweep_out(session, sweep)


@router.get("", response_model=SweepList, responses={422: {"model": ProblemList}})
def list_sweeps(
    session: SessionDep, state: str | None = None, cursor: str | None = None, limit: Limit = 50
):
    """Sweeps, newest first."""
    sweeps, next_cursor = store.list_sweeps(session, state=state, cursor=cursor, limit=limit)
    return SweepList(items=[sweep_out(session, s) for s in sweeps], next_cursor=next_cursor)


@router.get("/{sweep_id}", response_model=SweepOut, responses={404: {"model": ErrorOut}})
def get_sweep(sweep_id: str, session: SessionDep):
    """A sweep: spec, state, trial counts by state, best trial so far."""
    return sweep_out(session, store.get_sweep(session, sweep_id))


@router.get("/{sweep_id}/trials", response_model=TrialList, responses={404: {"model": ErrorOut}})
def list_trials(
    sweep_id: str,
    session: SessionDep,
    state: str | None = None,
    cursor: str | None = None,
    limit: Limit = 50,
):
    """A sweep's trials, by trial number."""
    sweep = store.get_sweep(session, sweep_id)
    trials, next_cursor = store.list_trials(session, sweep, state=state, cursor=cursor, limit=limit)
    return TrialList(items=[trial_out(t) for t in trials], next_cursor=next_cursor)


@router.get("/{sweep_id}/best", response_model=TrialOut, responses={404: {"model": ErrorOut}})
def get_best_trial(sweep_id: str, session: SessionDep):
    """The best finished trial: hyperparameters, metric, W&B run link, checkpoint."""
    sweep = store.get_sweep(session, sweep_id)
    trial = store.best_trial(session, sweep)
    if trial is None:
        raise store.NotFoundError(
            f"sweep '{sweep_id}' has no finished trial with its metric yet; try again later."
        )
    return trial_out(trial)
