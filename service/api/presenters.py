"""Turning stored rows into API schemas."""

from __future__ import annotations

from sqlalchemy.orm import Session

from service import sweeps as store
from service.models import Sweep, Trial
from service.schemas import HistoryEntry, SweepOut, TrialDetail, TrialOut


def trial_out(trial: Trial) -> TrialOut:
    return TrialOut.model_validate(trial)


def trial_detail(session: Session, trial: Trial) -> TrialDetail:
    history = [HistoryEntry(**entry) for entry in store.trial_history(session, trial)]
    return TrialDetail(**trial_out(trial).model_dump(), history=history)


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
