"""What the scheduler keeps of each sweep between passes, in one object per sweep."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ktsweep.service import sweeps as store
from ktsweep.service.models import ACTIVE_TRIAL_STATES, Sweep, Trial
from ktsweep.service.search import SearchMethod, TrialRecord, make_search_method
from ktsweep.service.search.warm_start import warm_start
from ktsweep.service.spec import SweepSpec
from ktsweep.service.trial_records import RECORD_COLUMNS, record_of_row


class SweepRuntime:
    """The scheduler's cache of one sweep: its parsed spec, its search method, and its trials.

    A spec never changes and a finished trial never changes, so both are read once. Kept while
    the sweep runs or is paused (a paused sweep's method goes on learning from its running
    trials); `SweepRuntimes.forget` drops it when the sweep ends.

    Attributes:
        sweep_id: The sweep.
        spec: Its parsed spec, once read (`spec_of`).
        method: Its search method, once built (`SweepRuntimes.method_for`).
        finished: Its finished trials by number.
        unfinished: Numbers of its trials not finished at the last pass.
        unlaunched: Numbers of its pending trials not handed to the executor (taken back from a
            lane by a pause, or found so after a restart).
        lanes: How many lanes its trials run in (0: none), once known.
        slot_freed_at: When a slot last freed up with no trial launched into it since
            (`time.monotonic()`), for the scheduling-latency metric.
        warm_start: What the method's warm start learned and skipped (`prior_sweeps`), as the
            API shows it, until the scheduler has stored it (`SweepRuntimes.unstored_warm_starts`);
            then None.
    """

    def __init__(self, sweep_id: str):
        self.sweep_id = sweep_id
        self.spec: SweepSpec | None = None
        self.method: SearchMethod | None = None
        self.finished: dict[int, TrialRecord] = {}
        self.unfinished: set[int] = set()
        self.unlaunched: set[int] = set()
        self.lanes: int | None = None
        self.slot_freed_at: float | None = None
        self.warm_start: dict[str, Any] | None = None

    def spec_of(self, sweep: Sweep) -> SweepSpec:
        """The sweep's parsed spec (parsed once)."""
        if self.spec is None:
            self.spec = store.sweep_spec(sweep)
        return self.spec

    def trials(self, session: Session) -> list[TrialRecord]:
        """Every trial of the sweep by number, as `suggest` sees them (without histories).

        A pass reads only the trials still pending or running, and those that ended since the
        last pass, whatever the number of trials in the sweep. A count checks what is kept
        against the database; the finished trials are read again if they disagree.
        """
        sweep_id, finished = self.sweep_id, self.finished
        unfinished = session.execute(
            select(*RECORD_COLUMNS).where(
                Trial.sweep_id == sweep_id, Trial.state.in_(ACTIVE_TRIAL_STATES)
            )
        ).all()
        still = {row.number for row in unfinished}
        ended = self.unfinished - still - finished.keys()
        if ended:
            for row in session.execute(
                select(*RECORD_COLUMNS).where(
                    Trial.sweep_id == sweep_id, Trial.number.in_(sorted(ended))
                )
            ):
                if row.state not in ACTIVE_TRIAL_STATES:
                    finished[row.number] = record_of_row(row)
        total = session.scalar(
            select(func.count()).select_from(Trial).where(Trial.sweep_id == sweep_id)
        )
        if len(finished.keys() - still) + len(still) != total:
            finished.clear()
            for row in session.execute(
                select(*RECORD_COLUMNS).where(
                    Trial.sweep_id == sweep_id, Trial.state.not_in(ACTIVE_TRIAL_STATES)
                )
            ):
                finished[row.number] = record_of_row(row)
        self.unfinished = still
        records = [record for number, record in finished.items() if number not in still]
        records.extend(record_of_row(row) for row in unfinished)
        records.sort(key=lambda record: record.number)
        return records


class SweepRuntimes:
    """Every sweep's `SweepRuntime`, made on first use; safe to use from several threads (the
    scheduling thread, the executor's, the API's)."""

    def __init__(self) -> None:
        self._runtimes: dict[str, SweepRuntime] = {}
        self._lock = threading.Lock()
        # Building a method can take seconds: other sweeps' runtimes stay at hand meanwhile.
        self._methods_lock = threading.Lock()

    def __call__(self, sweep_id: str) -> SweepRuntime:
        """The sweep's runtime, made if there is none."""
        with self._lock:
            runtime = self._runtimes.get(sweep_id)
            if runtime is None:
                runtime = self._runtimes[sweep_id] = SweepRuntime(sweep_id)
            return runtime

    def get(self, sweep_id: str) -> SweepRuntime | None:
        """The sweep's runtime, or None when there is none."""
        return self._runtimes.get(sweep_id)

    def kept(self) -> set[str]:
        """The ids of the sweeps kept."""
        with self._lock:
            return set(self._runtimes)

    def method_for(
        self,
        sweep: Sweep,
        records: Callable[[Sweep], list[TrialRecord]],
        spec: SweepSpec | None = None,
        prior_records: Callable[[Sweep, SweepSpec], list[TrialRecord]] | None = None,
    ) -> SearchMethod:
        """The sweep's search method, built once. A sweep with `prior_sweeps` first tells it
        their completed trials (`prior_records(sweep, spec)`; `warm_start`), and keeps the
        report for the scheduler to store; a method made for a sweep that already has trials
        (the controller restarted) then learns them (`records(sweep)`, with their histories;
        `SearchMethod.restore`)."""
        runtime = self(sweep.id)
        with self._methods_lock:
            if runtime.method is None:
                spec = spec or runtime.spec_of(sweep)
                method = make_search_method(spec)
                if spec.prior_sweeps and prior_records is not None:
                    report = warm_start(method, spec, prior_records(sweep, spec))
                    runtime.warm_start = report.as_json(spec.prior_sweeps)
                found = records(sweep)
                if found:
                    method.restore(found)
                runtime.method = method
            return runtime.method

    def unstored_warm_starts(self) -> dict[str, dict[str, Any]]:
        """The warm-start reports not stored yet, by sweep id; each is handed out once."""
        with self._lock:
            reports = {}
            for sweep_id, runtime in self._runtimes.items():
                if runtime.warm_start is not None:
                    reports[sweep_id], runtime.warm_start = runtime.warm_start, None
            return reports

    def forget(self, sweep_id: str) -> None:
        """Drop everything kept of a sweep that has ended (finished, failed or cancelled)."""
        with self._lock:
            self._runtimes.pop(sweep_id, None)
