"""What an API process without a scheduler (`ktsweep serve --no-scheduler`) has in its place.

Such a process shares nothing with the others but the database, so it can answer every route:

- a submission, pause, resume or cancel changes the database (cancel state first, as the
  scheduler does: the cancelled trials are marked in the same transaction), then wakes the
  active scheduler (`ktsweep.service.leadership.wake_scheduler`), which stops the cancelled
  trials' workers, takes back a paused sweep's waiting trials, or starts the new sweep's;
- a worker's report is stored (group commit), and a sweep with an early-termination rule is
  answered from the database (`ktsweep.service.report_answers.ReportAnswers`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from ktsweep.service import sweeps as store
from ktsweep.service.leadership import wake_scheduler
from ktsweep.service.models import Sweep
from ktsweep.service.report_answers import ReportAnswers
from ktsweep.service.report_writer import ReportWriter
from ktsweep.service.sweeps import ReportIn


class ApiScheduler:
    """The scheduler's part of the API, for a process that does not schedule.

    It has the methods the routes call on `app.state.scheduler`; each write goes to the database
    and wakes the active scheduler.

    Args:
        sessions: Database session factory.
        secret: The trial-token secret (from the database).
        metrics: Prometheus metrics to update, or None.
    """

    is_alive = True  # nothing runs here; /readyz names the active scheduler from the database

    def __init__(self, sessions: sessionmaker, secret: str, metrics: Any = None):
        self.sessions = sessions
        self.secret = secret
        self.metrics = metrics
        self.answers = ReportAnswers(sessions, metrics)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def learn_report_rules(self) -> None:
        pass

    def sweep_submitted(self, sweep_id: str) -> None:
        with self.sessions() as session:
            wake_scheduler(session, sweep_id, "submitted")

    def pause_sweep(self, session: Session, sweep_id: str) -> Sweep:
        sweep = store.change_sweep_state(session, sweep_id, "pause")
        wake_scheduler(session, sweep_id, "pause")
        return sweep

    def resume_sweep(self, session: Session, sweep_id: str) -> Sweep:
        sweep = store.change_sweep_state(session, sweep_id, "resume")
        wake_scheduler(session, sweep_id, "resume")
        return sweep

    def cancel_sweep(self, session: Session, sweep_id: str) -> Sweep:
        """The sweep and its active trials are `cancelled` in one transaction; the active
        scheduler, woken, stops their workers (a launch racing with it is refused there)."""
        sweep = store.change_sweep_state(session, sweep_id, "cancel")
        wake_scheduler(session, sweep_id, "cancel")
        return sweep

    async def handle_report(self, writer: ReportWriter, report: ReportIn) -> str:
        return await self.answers.answer(writer, report)
