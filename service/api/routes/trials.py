"""Routes for trials: read one, and the worker's per-step reports and heartbeats."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ktsweep.service import sweeps as store
from ktsweep.service.api.deps import ReadAccess, ReportAccess, SessionDep
from ktsweep.service.api.presenters import FastJSONResponse, trial_detail_json
from ktsweep.service.schemas import (
    ErrorOut,
    HeartbeatIn,
    ProblemList,
    ReportIn,
    ReportOut,
    TrialDetail,
)

router = APIRouter(prefix="/trials", tags=["trials"])

_FOUND = {401: {"model": ErrorOut}, 404: {"model": ErrorOut}}


@router.get("/{trial_id}", response_model=TrialDetail, responses=_FOUND, dependencies=[ReadAccess])
async def get_trial(trial_id: str, request: Request):
    """A trial: hyperparameters, state, per-epoch metric history, W&B run link, error."""

    connections = request.app.state.connections
    postgresql = connections.runs_statements_on_the_loop
    row, history = await connections.read(store.read_trial, trial_id, postgresql)
    return FastJSONResponse(trial_detail_json(row, history))


@router.post(
    "/{trial_id}/reports",
    response_model=ReportOut,
    responses={
        **_FOUND,
        403: {"model": ErrorOut},
        409: {"model": ErrorOut},
        422: {"model": ProblemList},
    },
    dependencies=[ReportAccess],
)
async def report(trial_id: str, body: ReportIn, request: Request):
    """A worker reports one step's metrics; the answer says `continue` or `stop`."""
    state = request.app.state  # not a dependency: each one costs every report its resolution
    report = store.ReportIn(trial_id, body.step, body.metrics, body.checkpoint)
    action = await state.scheduler.handle_report(state.reports, report)
    return FastJSONResponse({"action": action})


@router.post(
    "/{trial_id}/heartbeat",
    response_model=ReportOut,
    responses={
        **_FOUND,
        403: {"model": ErrorOut},
        409: {"model": ErrorOut},
        422: {"model": ProblemList},
    },
    dependencies=[ReportAccess],
)
def heartbeat(trial_id: str, session: SessionDep, body: HeartbeatIn | None = None):
    """A worker says its trial is still alive between reports, and on which node it runs (the
    trial's `node` shows it); the answer is as for reports."""
    node = body.node.model_dump(exclude_none=True) if body and body.node else None
    return ReportOut(action=store.record_heartbeat(session, trial_id, node))
