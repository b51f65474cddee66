"""The answer to a worker's report: store it, then "continue" or "stop" by the sweep's
early-termination rule, from the database alone.

Any process that has the database can answer reports (an API process without a scheduler
included): nothing here needs the scheduler or the executor. As Ray Tune's `TrialScheduler`
answers each result apart from the controller that runs the trials, and Optuna's pruners read
only what the storage holds.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from ktsweep.lifecycle import ACTIVE_STATES
from ktsweep.service import sweeps as store
from ktsweep.service.models import Sweep, SweepState, Trial
from ktsweep.service.report_writer import ReportWriter, record_and_answer
from ktsweep.service.search import SearchMethod, make_search_method
from ktsweep.service.search.base import finished_in_order
from ktsweep.service.search.stopping import make_stopping_rule
from ktsweep.service.sweeps import ReportIn
from ktsweep.service.trial_records import records_with_histories

log = logging.getLogger(__name__)


def may_stop_trials(method: SearchMethod) -> bool:
    """Whether the method has any early-termination rule to consult on reports."""
    overrides_stop = type(method).should_stop is not SearchMethod.should_stop
    return overrides_stop or getattr(method, "stopping_rule", None) is not None


class ReportAnswers:
    """Stores worker reports and answers each one "continue" or "stop", from the database alone.

    A report is stored through the one report store (the `ReportWriter`'s group commit). Only a
    sweep whose search method has an early-termination rule costs a decision: its method is
    built once per process (and learns the sweep's trials so far, as a scheduler's method does
    after a restart); before each answer it learns every trial that ended since
    (`SearchMethod.observe`), then its rule is asked about the reporting trial, with every
    trial's history as stored.

    Args:
        sessions: Database session factory.
        metrics: Prometheus metrics to update (`reports`), or None.

    Example:

    ```python
    answers = ReportAnswers(sessions)
    action = await answers.answer(writer, ReportIn("abc-0", step=1, metrics={"loss": 0.3}))
    ```
    """

    def __init__(self, sessions: sessionmaker, metrics: Any = None):
        self.sessions = sessions
        self.metrics = metrics
        # Per sweep: whether its method has an early-termination rule (a spec never changes).
        self.decides_on_reports: dict[str, bool] = {}
        self._methods: dict[str, SearchMethod] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    async def answer(self, writer: ReportWriter, report: ReportIn) -> str:
        """Store `report` (committed on return) and answer it: "stop" for a trial that has
        stopped or been cancelled, else the sweep's rule. Raises NotFoundError or ConflictError
        as `sweeps.record_reports` gives them."""

        def decide(_report: ReportIn, _recorded) -> Any:
            return asyncio.to_thread(self.decide, report.trial_id)

        return await record_and_answer(
            writer, report, self.decides_on_reports, decide, self.metrics
        )

    def decide(self, trial_id: str) -> str:
        """The early-termination answer to a report of `trial_id` already stored."""
        with self.sessions() as session:
            trial = store.get_trial(session, trial_id)
            sweep_id, number = trial.sweep_id, trial.number
            if not self.reports_need_answers(trial.sweep):
                return "continue"
            with self._lock_of(sweep_id):
                method, records = self._method(session, trial.sweep)
                if not self.decides_on_reports[sweep_id]:
                    return "continue"  # no rule: skip loading every trial's history
                if records is None:
                    records = records_with_histories(session, sweep_id)
                    for record in finished_in_order(records):
                        method.observe(record)  # a trial already learned is ignored
                current = next(record for record in records if record.number == number)
                return "stop" if method.should_stop(current, records) else "continue"

    def reports_need_answers(self, sweep: Sweep) -> bool:
        """Whether the sweep's reports can be answered "stop" (it has an early-termination
        rule): only then must a worker wait for each answer."""
        decides = self.decides_on_reports.get(sweep.id)
        if decides is None and make_stopping_rule(store.sweep_spec(sweep)) is None:
            # No `early_terminate`: every answer is "continue", and the search method (which
            # may import Keras Tuner and TensorFlow: seconds) need not be built to know it.
            decides = self.decides_on_reports[sweep.id] = False
        if decides is None:
            with self.sessions() as session, self._lock_of(sweep.id):
                self._method(session, session.get(Sweep, sweep.id) or sweep)
            decides = self.decides_on_reports[sweep.id]
        return decides

    def learn_report_rules(self) -> None:
        """Find out now, for every sweep with trials still going, whether its reports need an
        early-termination decision: building a sweep's search method can take seconds, better
        spent at start than while a worker's report waits."""
        with self.sessions() as session:
            sweeps = session.scalars(
                select(Sweep).where(
                    Sweep.state.in_([SweepState.RUNNING.value, SweepState.PAUSED.value]),
                    Sweep.trials.any(Trial.state.in_(ACTIVE_STATES)),
                )
            ).all()
        for sweep in sweeps:
            try:
                self.reports_need_answers(sweep)
            except Exception:  # its first report will try again, and say what is wrong
                log.exception("could not build the search method of sweep %s", sweep.id)

    def forget(self, sweep_id: str) -> None:
        """Drop what is kept of a sweep that has ended."""
        self._methods.pop(sweep_id, None)

    def _method(self, session, sweep: Sweep) -> tuple[SearchMethod, list | None]:
        """The sweep's method, built (and restored) on first use; with the records it was
        restored from then, else None. The sweep's lock is held."""
        method = self._methods.get(sweep.id)
        records = None
        if method is None:
            method = make_search_method(store.sweep_spec(sweep))
            self.decides_on_reports[sweep.id] = may_stop_trials(method)
            if self.decides_on_reports[sweep.id]:  # kept only where it answers reports
                records = records_with_histories(session, sweep.id)
                if records:
                    method.restore(records)
                self._methods[sweep.id] = method
        return method, records

    def _lock_of(self, sweep_id: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(sweep_id, threading.Lock())
