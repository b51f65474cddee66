"""Turning stored rows into API schemas."""

from __future__ import annotations

from sqlalchemy.orm import Session

from service import sweeps as store
from service.models import Sweep, Trial
from service.schemas import SweepOut, TrialDetail, TrialOut


def trial_out(trial: Trial) -> TrialOut:
    return TrialOut.model_validate(trial)


def trial_detail(session: Session, trial: Trial) -> TrialDetail:
    detail = TrialDetail.model_validate(trial)
    detail.history = store.trial_history(session, trial)
    return detail


def sweep_out(session: Session, sweep: Sweep) -> SweepOut:
    best = store.best_trial(session, sweep)
    return SweepOut(
        id=sweep.id,
        name=sweep.name,
        state=sweep.state,
        spec=sweep.spec,
        trial_counts=store.trial_counts(session, sweep.id),
        best_trial=trial_out(best) if best else None,
        created_at=sweep.created_at,
        finished_at=sweep.finished_at,
    )
