"""Routes for trials: read one, and the worker's per-step reports and heartbeats."""

from __future__ import annotations

from fastapi import APIRouter

from service import sweeps as store
from service.api.deps import ReadAccess, ReportAccess, SchedulerDep, SessionDep
from service.api.presenters import trial_detail
from service.schemas import ErrorOut, ProblemList, ReportIn, ReportOut, TrialDetail

router = APIRouter(prefix="/trials", tags=["trials"])

_FOUND = {401: {"model": ErrorOut}, 404: {"model": ErrorOut}}


@router.get("/{trial_id}", response_model=TrialDetail, responses=_FOUND, dependencies=[ReadAccess])
def get_trial(trial_id: str, session: SessionDep):
    """A trial: hyperparameters, state, per-epoch metric history, W&B run link, error."""
    return trial_detail(session, store.get_trial(session, trial_id))


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
def report(trial_id: str, body: ReportIn, session: SessionDep, scheduler: SchedulerDep):
    """A worker reports one step's metrics; the answer says `continue` or `stop`."""
    action = scheduler.on_report(session, trial_id, body.step, body.metrics, body.checkpoint)
    return ReportOut(action=action)


@router.post(
    "/{trial_id}/heartbeat",
    response_model=ReportOut,
    responses={**_FOUND, 403: {"model": ErrorOut}, 409: {"model": ErrorOut}},
    dependencies=[ReportAccess],
)
def heartbeat(trial_id: str, session: SessionDep):
    """A worker says its trial is still alive between reports; the answer is as for reports."""
    return ReportOut(action=store.record_heartbeat(session, trial_id))
