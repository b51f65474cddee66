"""Keeps each running sweep's trials going on Ray: never more than `parallelism` at once, never
more than `run_cap` in all, and the next trial starts the moment one ends."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session, object_session, sessionmaker

from ktsweep.service import sweeps as store
from ktsweep.service.auth import trial_token
from ktsweep.service.models import (
    ACTIVE_TRIAL_STATES,
    Sweep,
    SweepState,
    Trial,
    TrialReport,
    TrialState,
    utcnow,
)
from ktsweep.service.observability import Metrics
from ktsweep.service.pareto import meets_targets, objective_values
from ktsweep.service.report_writer import ReportWriter, record_and_answer
from ktsweep.service.search import SearchMethod, Suggestion, TrialRecord, make_search_method
from ktsweep.service.spec import SweepSpec, TrialSection, is_program_sweep
from ktsweep.service.sweeps import ReportIn
from ktsweep.worker.last_checkpoint import last_checkpoint_record, read_last_checkpoint
from ktsweep.worker.trial_spec import WITHDRAWN, TrialResult, TrialSpec

log = logging.getLogger(__name__)

# A result state the executor uses when the worker process or its node died mid-trial.
LOST = "lost"


class TrialExecutor(Protocol):
    def start(self) -> None: ...
    def launch(self, spec: TrialSpec, on_done) -> None: ...
    def cancel(self, trial_id: str) -> None: ...


class Scheduler:
    """Starts trials for running sweeps, relays early-stopping decisions, records how trials end.

    One background thread does all scheduling. It sleeps until something happens — a sweep is
    submitted, or a trial ends (the executor calls back at once) — then fills every sweep's
    free slots.

    Args:
        sessions: Database session factory.
        executor: Runs trials (e.g. `ktsweep.worker.RayTrialExecutor`).
        api_url: The controller's URL that workers report to.
        artifact_dir: Folder for W&B runs and checkpoints.
        wandb_mode: W&B mode when a spec does not set one.
        secret: Secret that signs each trial's report token.
        heartbeat_timeout_s: A running trial silent for longer is declared lost. Default 600.
        checkpoint_every_s: Seconds between a trial's resumable checkpoints. Default 0: every
            epoch.
        report_every_s: The least time between two background reports of a trial. Default 1.
        metrics: Prometheus metrics to update, or None.
    """

    def __init__(
        self,
        sessions: sessionmaker,
        executor: TrialExecutor,
        api_url: str | None,
        artifact_dir: Path,
        wandb_mode: str = "offline",
        secret: str = "",
        heartbeat_timeout_s: float = 600.0,
        metrics: Metrics | None = None,
        checkpoint_every_s: float = 0.0,
        report_every_s: float = 1.0,
    ):
        self.sessions = sessions
        self.executor = executor
        self.api_url = api_url
        self.artifact_dir = Path(artifact_dir).resolve()
        self.wandb_mode = wandb_mode
        self.secret = secret
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.checkpoint_every_s = checkpoint_every_s
        self.report_every_s = report_every_s
        self.metrics = metrics
        self._slot_freed_at: dict[str, float] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._methods: dict[str, SearchMethod] = {}
        self._methods_lock = threading.Lock()
        # Per sweep: whether its method has an early-termination rule (a spec never changes).
        self._decides_on_reports: dict[str, bool] = {}
        # Per sweep, for the scheduling thread: parsed specs, finished trials (which never
        # change) by number, and the numbers of the trials not finished at the last pass.
        self._specs: dict[str, SweepSpec] = {}
        self._finished: dict[str, dict[int, TrialRecord]] = {}
        self._unfinished: dict[str, set[int]] = {}
        # Per sweep: numbers of its pending trials not handed to the executor (taken back
        # from a lane by a pause, or found so after a restart); kept while a sweep is paused.
        self._unlaunched: dict[str, set[int]] = {}
        # Per sweep: how many lanes its trials run in (0: none; see `_lanes_of`).
        self._lanes: dict[str, int] = {}
        # Trials that started in lanes, not yet marked running (see `_trial_started`).
        self._starts: list[tuple[str, int, Any]] = []
        self._starts_lock = threading.Lock()
        self._silent_checked_at = 0.0

    def start(self) -> None:
        self.executor.start()
        self.recover_running_trials()
        self._thread = threading.Thread(target=self._loop, name="ktsweep-scheduler", daemon=True)
        self._thread.start()
        self.notify()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def is_alive(self) -> bool:
        """Whether the scheduling thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def sweep_submitted(self, sweep_id: str) -> None:
        self._slot_freed_at[sweep_id] = time.monotonic()
        self.notify()

    def notify(self) -> None:
        """Wake the scheduler: something changed (a new sweep, a finished trial)."""
        self._wake.set()

    def _loop(self) -> None:
        # Every change calls `notify`; the timeout only paces the heartbeat check.
        check_every = max(0.5, min(30.0, self.heartbeat_timeout_s / 4))
        while not self._stopping.is_set():
            self._wake.wait(timeout=check_every)
            self._wake.clear()
            if self._stopping.is_set():
                break
            try:
                # At most once per `check_every`, not on every wake: it costs a query.
                if time.monotonic() - self._silent_checked_at >= check_every:
                    self._silent_checked_at = time.monotonic()
                    self.declare_silent_trials_lost()
                self.schedule_pending_trials()
            except Exception:
                log.exception("scheduling pass failed")

    def recover_running_trials(self) -> None:
        """After a controller restart: relaunch the trials that were running, from their last
        checkpoint, then those that waited to start. Their workers died with the old
        controller's Ray driver; this does not count against their `max_retries`. A paused
        sweep's waiting trials wait for `resume`."""
        with self.sessions() as session:
            orphans = session.scalars(
                select(Trial)
                .join(Sweep)
                .where(
                    Trial.state.in_(ACTIVE_TRIAL_STATES),
                    Sweep.state.in_([SweepState.RUNNING.value, SweepState.PAUSED.value]),
                )
                .order_by(
                    Trial.sweep_id,
                    case((Trial.state == TrialState.RUNNING.value, 0), else_=1),
                    Trial.number,
                )
            ).all()
            for trial in orphans:
                waiting = trial.state == TrialState.PENDING.value and (
                    trial.attempts == 0 or trial.sweep.state == SweepState.PAUSED.value
                )
                if waiting:  # launched by a scheduling pass (a paused sweep's: after resume)
                    if trial.attempts > 0:
                        trial.attempts -= 1  # its launch was never run
                        session.commit()
                    self._unlaunched.setdefault(trial.sweep_id, set()).add(trial.number)
                    continue
                log.warning(
                    "resuming trial %s after a controller restart",
                    trial.id,
                    extra={"sweep_id": trial.sweep_id, "trial_id": trial.id},
                )
                trial.attempts -= 1  # the relaunch below counts it again
                self._launch(
                    session, trial.sweep, store.sweep_spec(trial.sweep), trial, resume=True
                )

    def declare_silent_trials_lost(self) -> None:
        """A running trial whose worker has not reported for `heartbeat_timeout_s` is lost:
        its task is cancelled and it is retried (or failed, with no retries left)."""
        deadline = utcnow() - timedelta(seconds=self.heartbeat_timeout_s)
        with self.sessions() as session:
            # Only the silent ones: loading every running trial would stall the API each pass.
            last_seen = func.coalesce(Trial.heartbeat_at, Trial.started_at)
            silent = session.scalars(
                select(Trial).where(Trial.state == TrialState.RUNNING.value, last_seen <= deadline)
            ).all()
            for trial in silent:
                error = (
                    f"no report or heartbeat from the worker for {self.heartbeat_timeout_s:g} s; "
                    "the trial was declared lost."
                )
                log.warning(error, extra={"sweep_id": trial.sweep_id, "trial_id": trial.id})
                self.executor.cancel(trial.id)
                result = TrialResult(trial_id=trial.id, state=LOST, error=error)
                self._finish_trial(session, trial, result)

    def method_for(self, sweep: Sweep, spec: SweepSpec | None = None) -> SearchMethod:
        """The sweep's search method (one instance per sweep, kept while it runs).

        A method made for a sweep that already has trials (the controller restarted) first
        learns them (`SearchMethod.restore`), so it goes on as if it had never stopped.
        """
        with self._methods_lock:
            method = self._methods.get(sweep.id)
            if method is None:
                method = make_search_method(spec or store.sweep_spec(sweep))
                records = self._trial_records(sweep)
                if records:
                    method.restore(records)
                self._methods[sweep.id] = method
            return method

    def _trial_records(self, sweep: Sweep) -> list[TrialRecord]:
        """Every trial of the sweep, with its history, as search methods see them."""
        session = object_session(sweep)
        if session is None:
            with self.sessions() as own_session:
                return _records_with_histories(own_session, sweep.id)
        return _records_with_histories(session, sweep.id)

    def schedule_pending_trials(self) -> None:
        """One pass: start trials wherever a running sweep has a free slot; finish done sweeps."""
        with self.sessions() as session:
            sweep_ids = session.scalars(
                select(Sweep.id).where(Sweep.state == SweepState.RUNNING.value)
            ).all()
        for gone in self._finished.keys() - set(sweep_ids):  # ended, paused or cancelled
            self._forget_sweep(gone, keep_method=True)
        for sweep_id in sweep_ids:
            with self.sessions() as session:
                # Locked (where the database can) so a concurrent cancel or pause waits for us.
                sweep = session.scalars(
                    select(Sweep).where(Sweep.id == sweep_id).with_for_update()
                ).first()
                if sweep is not None and sweep.state == SweepState.RUNNING.value:
                    self._fill_sweep(session, sweep)

    def _fill_sweep(self, session: Session, sweep: Sweep) -> None:
        """Start trials in the sweep's free slots; finish the sweep when it is done."""
        spec = self._spec_of(sweep)
        method = self.method_for(sweep, spec)
        trials = self._sweep_trials(session, sweep.id)
        active = sum(trial.state in ACTIVE_TRIAL_STATES for trial in trials)
        run_cap = spec.run_cap if spec.run_cap is not None else float("inf")
        out_of_trials = target_reached(spec, trials)
        if out_of_trials:
            # No new trial starts any more: those waiting to start never will.
            self._withdraw(sweep.id)
            deleted = self._delete_never_started(session, sweep.id)
            if deleted:
                trials = [trial for trial in trials if trial.number not in deleted]
                active -= len(deleted)
        unlaunched = sorted(self._unlaunched.get(sweep.id, ()))
        # With lanes, each slot also holds its next trial, ready to start in the slot.
        lanes = self._lanes_of(sweep, method)
        limit = spec.parallelism * (2 if lanes else 1)
        launched = active - len(unlaunched)
        for number in unlaunched:
            if launched >= limit:
                break
            trial = store.get_trial(session, f"{sweep.id}-{number}")
            self._unlaunched[sweep.id].discard(number)
            if trial.state != TrialState.PENDING.value:
                continue
            if not self._launch(session, sweep, spec, trial, resume=trial.started_at is not None):
                return  # the sweep stopped running meanwhile (cancelled, paused)
            launched += 1
        while not out_of_trials and launched < limit and len(trials) < run_cap:
            suggestion = method.suggest(len(trials), trials)
            if suggestion is None:
                out_of_trials = not method.is_waiting(trials)
                break
            if not isinstance(suggestion, Suggestion):
                suggestion = Suggestion(hyperparameters=suggestion)
            trial = self._create_trial(session, sweep, len(trials), suggestion)
            trials.append(trial_record(trial))
            self._unfinished.setdefault(sweep.id, set()).add(trial.number)
            active += 1
            launched += 1
            if not self._launch(session, sweep, spec, trial):
                return  # the sweep stopped running meanwhile: the new trial was not stored
            freed_at = self._slot_freed_at.pop(sweep.id, None)
            if freed_at is not None and self.metrics is not None:
                self.metrics.scheduling_latency.observe(time.monotonic() - freed_at)
        if active == 0 and (out_of_trials or len(trials) >= run_cap):
            self._finish_sweep(session, sweep, trials)

    def _sweep_trials(self, session: Session, sweep_id: str) -> list[TrialRecord]:
        """Every trial of the sweep by number, as `suggest` sees them (without histories).

        A finished trial never changes, so each is read once and kept: a scheduling pass reads
        only the trials still pending or running, and those that ended since the last pass,
        whatever the number of trials in the sweep. A count checks what is kept against the
        database; the finished trials are read again if they disagree.
        """
        finished = self._finished.setdefault(sweep_id, {})
        unfinished = session.execute(
            select(*_RECORD_COLUMNS).where(
                Trial.sweep_id == sweep_id, Trial.state.in_(ACTIVE_TRIAL_STATES)
            )
        ).all()
        still = {row.number for row in unfinished}
        ended = self._unfinished.get(sweep_id, set()) - still - finished.keys()
        if ended:
            for row in session.execute(
                select(*_RECORD_COLUMNS).where(
                    Trial.sweep_id == sweep_id, Trial.number.in_(sorted(ended))
                )
            ):
                if row.state not in ACTIVE_TRIAL_STATES:
                    finished[row.number] = _record_of_row(row)
        total = session.scalar(
            select(func.count()).select_from(Trial).where(Trial.sweep_id == sweep_id)
        )
        if len(finished.keys() - still) + len(still) != total:
            finished.clear()
            for row in session.execute(
                select(*_RECORD_COLUMNS).where(
                    Trial.sweep_id == sweep_id, Trial.state.not_in(ACTIVE_TRIAL_STATES)
                )
            ):
                finished[row.number] = _record_of_row(row)
        self._unfinished[sweep_id] = still
        records = [record for number, record in finished.items() if number not in still]
        records.extend(_record_of_row(row) for row in unfinished)
        records.sort(key=lambda record: record.number)
        return records

    def _spec_of(self, sweep: Sweep) -> SweepSpec:
        """The sweep's parsed spec (parsed once: a spec never changes)."""
        spec = self._specs.get(sweep.id)
        if spec is None:
            spec = self._specs[sweep.id] = store.sweep_spec(sweep)
        return spec

    def _forget_sweep(self, sweep_id: str, keep_method: bool = False) -> None:
        """Drop what the scheduling thread keeps of a sweep that starts no more trials now
        (`keep_method`: a paused sweep's method goes on learning from its running trials)."""
        if not keep_method:
            with self._methods_lock:
                self._methods.pop(sweep_id, None)
            self._unlaunched.pop(sweep_id, None)
            self._lanes.pop(sweep_id, None)
        self._specs.pop(sweep_id, None)
        self._finished.pop(sweep_id, None)
        self._unfinished.pop(sweep_id, None)

    def _create_trial(
        self,
        session: Session,
        sweep: Sweep,
        number: int,
        suggestion: Suggestion,
    ) -> Trial:
        fit: dict[str, Any] = {}
        if suggestion.epochs is not None:
            fit["epochs"] = suggestion.epochs
        if suggestion.initial_epoch is not None:
            fit["initial_epoch"] = suggestion.initial_epoch
        parent = None
        if suggestion.parent is not None:
            parent = store.get_trial(session, f"{sweep.id}-{suggestion.parent}")
        parent_checkpoint = None
        if parent is not None:
            # A continuation starts from where its parent stopped: its latest-epoch checkpoint.
            last = read_last_checkpoint(self.checkpoint_dir(sweep.id, parent.id))
            parent_checkpoint = last[0] if last is not None else parent.checkpoint
        trial = Trial(
            id=f"{sweep.id}-{number}",
            sweep_id=sweep.id,
            number=number,
            state=TrialState.PENDING.value,
            hyperparameters=suggestion.hyperparameters,
            metrics={},
            fit=fit or None,
            parent_id=parent.id if parent is not None else None,
            checkpoint=parent_checkpoint,
            epochs=0,
            attempts=0,
        )
        session.add(trial)  # committed with its launch
        return trial

    def trial_spec(
        self,
        sweep: Sweep,
        spec: SweepSpec,
        trial: Trial,
        resume: bool = False,
        last: dict | None = None,
    ) -> TrialSpec:
        """What the worker is told about `trial` (`resume`: continue from its checkpoint,
        `last` as `last_checkpoint_record` read it, else read here)."""
        section = spec.trial or TrialSection()
        wandb = spec.wandb
        fit = section.fit.model_dump(exclude_none=True)
        overrides = dict(trial.fit or {})
        initial_epoch = overrides.pop("initial_epoch", 0)
        fit.update(overrides)
        resume_from = None
        saved = self._own_checkpoint(trial.checkpoint)
        if resume:
            if last is None:
                last = last_checkpoint_record(self.checkpoint_dir(sweep.id, trial.id))
            if last is not None and self._own_checkpoint(last["path"]):
                resume_from, initial_epoch = last["path"], last["epoch"]
            elif saved:
                resume_from, initial_epoch = saved, max(initial_epoch, trial.epochs)
            else:
                initial_epoch = 0  # nothing saved: start over
        elif trial.parent_id:
            resume_from = saved
            if resume_from is None:
                initial_epoch = 0  # the parent saved nothing: train the whole budget
        return TrialSpec(
            trial_id=trial.id,
            hyperparameters=trial.hyperparameters,
            hypermodel=section.hypermodel,
            data=section.data,
            sweep_id=sweep.id,
            sweep_name=sweep.name,
            fit=fit,
            metric=spec.metric.name if spec.metric else None,
            objectives=[objective.name for objective in spec.metrics] if spec.metrics else None,
            wandb={
                "project": wandb.project or spec.project or "ktsweep",
                "entity": wandb.entity or spec.entity,
                "mode": wandb.mode or self.wandb_mode,
                "dir": str(self.artifact_dir),
                "tags": wandb.tags,
            },
            callbacks=spec.callbacks.model_dump(),
            checkpoint_dir=str(self.checkpoint_dir(sweep.id, trial.id)),
            report_url=self.api_url,
            report_token=trial_token(self.secret, trial.id),
            resources=section.resources.model_dump(exclude_none=True),
            resume_from=resume_from,
            initial_epoch=initial_epoch,
            timeout_s=section.timeout_s,
            program=spec.program if is_program_sweep(spec) else None,
            command=[str(part) for part in spec.command] if spec.command else None,
            working_dir=spec.working_dir,
            checkpoint_every_s=self.checkpoint_every_s,
            report_waits=self._reports_wait(sweep),
            report_every_s=self.report_every_s,
        )

    def _own_checkpoint(self, path: str | None) -> str | None:
        """`path` if it lies in the artifact folder, else None: a checkpoint to resume from
        comes from a worker's report or `last.json`, which trial code can write, and a worker
        loads it as a model. Only the files the controller's own folder holds are trusted."""
        if not path:
            return None
        if path.startswith("wandb-artifact://"):
            return None  # a W&B artifact could name any project's model
        root = os.path.normpath(os.path.abspath(self.artifact_dir))
        resolved = os.path.normpath(os.path.join(root, path))
        if resolved.startswith(root + os.sep):
            return path
        log.warning("ignoring checkpoint %r: it is not in the artifact folder %s", path, root)
        return None

    def _reports_need_answers(self, sweep: Sweep) -> bool:
        """Whether the sweep's reports can be answered "stop" (it has an early-termination
        rule): only then must a worker wait for each answer."""
        decides = self._decides_on_reports.get(sweep.id)
        if decides is None:
            decides = may_stop_trials(self.method_for(sweep))
            self._decides_on_reports[sweep.id] = decides
        return decides

    def _reports_wait(self, sweep: Sweep) -> bool:
        try:
            return self._reports_need_answers(sweep)
        except Exception:  # the launch itself will say what is wrong with the sweep
            return True

    def _fill_in_last_report(self, session: Session, trial: Trial, last: dict | None) -> None:
        """The worker may have saved epochs whose reports never reached the controller (it
        died, or the controller did, or a later report took their place): record those steps
        from the checkpoint's own record before resuming."""
        if last is None or trial.state not in ACTIVE_TRIAL_STATES:
            return
        stored = set(
            session.scalars(select(TrialReport.step).where(TrialReport.trial_id == trial.id))
        )
        missing = [
            entry
            for entry in last["history"]
            if entry["step"] <= last["epoch"] and entry["step"] not in stored
        ]
        for entry in missing:
            store.record_report(session, trial.id, entry["step"], entry["metrics"])
        if missing:
            session.refresh(trial)

    def checkpoint_dir(self, sweep_id: str, trial_id: str) -> Path:
        """A trial's checkpoint folder, under the (shared) artifact folder."""
        return self.artifact_dir / "checkpoints" / sweep_id / trial_id

    def _launch(
        self, session: Session, sweep: Sweep, spec: SweepSpec, trial: Trial, resume: bool = False
    ) -> bool:
        """Start a trial on the executor; False (nothing stored) when its sweep stopped running.

        The trial's row is committed only while the sweep is still `running` (checked by an
        update of the sweep's row in the same transaction, which also makes a concurrent cancel
        wait for it); a cancel that commits between that and the executor's launch is caught
        right after, and the trial is cancelled there too.
        """
        last = None
        if resume:
            # Read once: a worker of the old controller may still be writing its checkpoint.
            last = last_checkpoint_record(self.checkpoint_dir(sweep.id, trial.id))
            self._fill_in_last_report(session, trial, last)
        trial_spec = self.trial_spec(sweep, spec, trial, resume=resume, last=last)
        if resume:
            # Steps after the resume point will be reported again.
            trial.epochs = trial_spec.initial_epoch
            session.execute(
                TrialReport.__table__.delete().where(
                    TrialReport.trial_id == trial.id, TrialReport.step > trial.epochs
                )
            )
        lanes = self._lanes_of(sweep)
        starts_now = not lanes or self.executor.has_idle_lane(sweep.id, lanes)
        self._mark_started(trial, starts_now)
        trial.attempts += 1
        attempt = trial.attempts
        if not _sweep_still_running(session, sweep.id):
            session.rollback()
            return False
        session.commit()
        if self.metrics is not None:
            self.metrics.trials_launched.inc()

        def on_done(trial_id: str, result: TrialResult) -> None:
            self._on_trial_done(trial_id, result, attempt)

        def on_start(trial_id: str) -> None:
            self._trial_started(trial_id, attempt)

        try:
            if lanes:
                started = self.executor.launch(
                    trial_spec, on_done, group=sweep.id, lanes=lanes, on_start=on_start
                )
                session.refresh(trial)
                if started != starts_now and trial.state in ACTIVE_TRIAL_STATES:
                    self._mark_started(trial, started)  # a lane freed or filled meanwhile
                    session.commit()
            else:
                self.executor.launch(trial_spec, on_done)
        except Exception as exc:
            log.exception("could not launch trial %s", trial.id)
            trial.state = TrialState.FAILED.value
            trial.error = f"could not start the trial on the cluster: {exc}"
            trial.finished_at = utcnow()
            session.commit()
            return True
        session.commit()  # a fresh read: a cancel may have committed since the launch's commit
        state = session.scalar(select(Sweep.state).where(Sweep.id == sweep.id))
        if state == SweepState.CANCELLED.value:
            self.executor.cancel(trial.id)
            return False
        return True

    @staticmethod
    def _mark_started(trial: Trial, started: bool) -> None:
        """`running` from now, or `pending` while it waits in a lane to start."""
        if started:
            trial.state = TrialState.RUNNING.value
            trial.started_at = trial.started_at or utcnow()
            trial.heartbeat_at = utcnow()
        else:
            trial.state = TrialState.PENDING.value

    def _trial_started(self, trial_id: str, attempt: int) -> None:
        """A trial that waited in a lane started (the trial ahead of it ended). The executor
        reports the end of that trial next, on the same thread: the start is written in the
        same transaction (`_write_starts`)."""
        with self._starts_lock:
            self._starts.append((trial_id, attempt, utcnow()))

    def _write_starts(self, session: Session) -> None:
        """Mark the trials that started in lanes `running` (in the caller's transaction)."""
        with self._starts_lock:
            starts, self._starts = self._starts, []
        for trial_id, attempt, at in starts:
            session.execute(
                update(Trial)
                .where(
                    Trial.id == trial_id,
                    Trial.attempts == attempt,
                    Trial.state.in_(ACTIVE_TRIAL_STATES),
                )
                .values(
                    state=TrialState.RUNNING.value,
                    started_at=func.coalesce(Trial.started_at, at),
                    heartbeat_at=at,
                )
                .execution_options(synchronize_session=False)
            )

    def _lanes_of(self, sweep: Sweep, method: SearchMethod | None = None) -> int:
        """How many lanes the sweep's trials run in: `parallelism` when its method suggests
        ahead and the executor has lanes (each slot's next trial then waits in the executor,
        submitted the moment the slot frees), else 0 (each trial launched when a slot frees)."""
        lanes = self._lanes.get(sweep.id)
        if lanes is None:
            method = method or self.method_for(sweep)
            ahead = method.suggests_ahead and hasattr(self.executor, "withdraw")
            lanes = self._lanes[sweep.id] = self._spec_of(sweep).parallelism if ahead else 0
        return lanes

    def _withdraw(self, sweep_id: str) -> None:
        """Take back the sweep's trials waiting in lanes; each comes back "withdrawn"."""
        if self._lanes.get(sweep_id):
            self.executor.withdraw(sweep_id)

    def _delete_never_started(self, session: Session, sweep_id: str) -> set[int]:
        """Delete the sweep's unlaunched trials that never started (it reached its target):
        returns their numbers. One that ran before (lost, then taken back) still finishes."""
        unlaunched = self._unlaunched.get(sweep_id)
        if not unlaunched:
            return set()
        ids = [f"{sweep_id}-{number}" for number in unlaunched]
        never_started = set(
            session.scalars(
                select(Trial.number).where(
                    Trial.id.in_(ids),
                    Trial.state == TrialState.PENDING.value,
                    Trial.started_at.is_(None),
                )
            )
        )
        if never_started:
            session.execute(
                Trial.__table__.delete().where(
                    Trial.sweep_id == sweep_id, Trial.number.in_(sorted(never_started))
                )
            )
            session.commit()
            unlaunched -= never_started
            self._unfinished.get(sweep_id, set()).difference_update(never_started)
        return never_started

    def on_report(
        self,
        session: Session,
        trial_id: str,
        step: int,
        metrics: dict[str, Any],
        checkpoint: str | None = None,
    ) -> str:
        """Store a worker's report and answer "continue" or "stop" (early termination)."""
        action = store.record_report(session, trial_id, step, metrics, checkpoint)
        if self.metrics is not None:
            self.metrics.reports.inc()
        if action != "continue":
            return action
        return self._decide_on_report(session, trial_id)

    async def handle_report(self, writer: ReportWriter, report: ReportIn) -> str:
        """`on_report` for the API: the report is stored with others in one commit (group
        commit), and only a sweep with an early-termination rule costs a decision."""

        def decide() -> str:
            with self.sessions() as session:
                return self._decide_on_report(session, report.trial_id)

        return await record_and_answer(
            writer,
            report,
            self._decides_on_reports,
            lambda _report, _recorded: asyncio.to_thread(decide),
            self.metrics,
        )

    def learn_report_rules(self) -> None:
        """Find out now, for every sweep with trials still going, whether its reports need an
        early-termination decision: building a sweep's search method can take seconds, better
        spent at start than while a worker's report waits."""
        with self.sessions() as session:
            sweeps = session.scalars(
                select(Sweep).where(
                    Sweep.state.in_([SweepState.RUNNING.value, SweepState.PAUSED.value]),
                    Sweep.trials.any(Trial.state.in_(ACTIVE_TRIAL_STATES)),
                )
            ).all()
            for sweep in sweeps:
                try:
                    self._reports_need_answers(sweep)
                except Exception:  # its first report will try again, and say what is wrong
                    log.exception("could not build the search method of sweep %s", sweep.id)

    def decide_on_report(self, trial_id: str) -> tuple[str, bool]:
        """The early-termination answer to a report of `trial_id` already stored, and whether
        its sweep has a rule to consult at all (a follower process asks this)."""
        with self.sessions() as session:
            action = self._decide_on_report(session, trial_id)
            sweep_id = store.get_trial(session, trial_id).sweep_id
        return action, self._decides_on_reports.get(sweep_id, True)

    def _decide_on_report(self, session: Session, trial_id: str) -> str:
        trial = store.get_trial(session, trial_id)
        method = self.method_for(trial.sweep)
        decides = self._decides_on_reports[trial.sweep_id] = may_stop_trials(method)
        if not decides:
            return "continue"  # no early-termination rule: skip loading every trial's history
        trials = list(session.scalars(select(Trial).where(Trial.sweep_id == trial.sweep_id)))
        histories = _histories(session, trial.sweep_id)
        records = [trial_record(t, histories.get(t.id, [])) for t in trials]
        current = next(record for record in records if record.number == trial.number)
        return "stop" if method.should_stop(current, records) else "continue"

    def pause_sweep(self, session: Session, sweep_id: str) -> Sweep:
        """Start no new trials for the sweep; running ones finish (those waiting in lanes to
        start are taken back, and start after `resume`)."""
        sweep = store.change_sweep_state(session, sweep_id, "pause")
        self._withdraw(sweep_id)
        return sweep

    def resume_sweep(self, session: Session, sweep_id: str) -> Sweep:
        sweep = store.change_sweep_state(session, sweep_id, "resume")
        self.notify()
        return sweep

    def cancel_sweep(self, session: Session, sweep_id: str) -> Sweep:
        """End the sweep and stop its running trials' workers now.

        The state changes first (its trials with it), then every trial it cancelled is stopped:
        a trial launched before the change is among them, and a launch after it is refused
        (`_launch`).
        """
        sweep = store.change_sweep_state(session, sweep_id, "cancel")
        cancelled = session.scalars(
            select(Trial.id).where(
                Trial.sweep_id == sweep_id,
                Trial.state == TrialState.CANCELLED.value,
                Trial.finished_at == sweep.finished_at,
            )
        ).all()
        for trial_id in cancelled:
            self.executor.cancel(trial_id)
        with self._methods_lock:
            self._methods.pop(sweep_id, None)
        self._unlaunched.pop(sweep_id, None)
        return sweep

    def _on_trial_done(self, trial_id: str, result: TrialResult, attempt: int) -> None:
        with self.sessions() as session:
            self._write_starts(session)
            trial = store.locked_trial(session, trial_id)
            if trial.attempts != attempt or trial.state not in ACTIVE_TRIAL_STATES + (
                TrialState.CANCELLED.value,
            ):
                session.commit()
                return  # the end of an attempt already given up on (lost, then retried)
            if result.state == WITHDRAWN:
                if trial.state in ACTIVE_TRIAL_STATES:
                    # Back to waiting, not launched: the next pass (or `resume`) launches it;
                    # its launch does not count as an attempt.
                    trial.state = TrialState.PENDING.value
                    trial.attempts -= 1
                    session.commit()
                    self._unlaunched.setdefault(trial.sweep_id, set()).add(trial.number)
                    self.notify()
                session.commit()
                return
            self._finish_trial(session, trial, result)

    def _finish_trial(self, session: Session, trial: Trial, result: TrialResult) -> None:
        ids = {"sweep_id": trial.sweep_id, "trial_id": trial.id}
        if result.state == LOST and self._retry(session, trial, result):
            return
        if result.state == LOST:
            result.state = TrialState.FAILED.value
        spec = self._specs.get(trial.sweep_id) or store.sweep_spec(trial.sweep)
        metric = spec.metric.name if spec.metric else None
        trial, history = store.record_trial_result(session, trial.id, result.to_dict(), metric)
        sweep_state = session.scalar(select(Sweep.state).where(Sweep.id == trial.sweep_id))
        if sweep_state == SweepState.RUNNING.value:
            method = self._methods.get(trial.sweep_id) or self.method_for(trial.sweep)
            method.observe(trial_record(trial, history))
        log.info("trial %s ended: %s", trial.id, trial.state, extra=ids)
        self._slot_freed_at.setdefault(trial.sweep_id, time.monotonic())
        self.notify()

    def _retry(self, session: Session, trial: Trial, result: TrialResult) -> bool:
        """Run a trial lost with its worker again, from its last checkpoint, while it has
        retries left."""
        spec = store.sweep_spec(trial.sweep)
        max_retries = spec.trial.max_retries if spec.trial else 0
        if trial.attempts > max_retries or trial.sweep.state == SweepState.CANCELLED.value:
            return False
        log.warning(
            "trial %s lost its worker (%s); retrying",
            trial.id,
            result.error,
            extra={"sweep_id": trial.sweep_id, "trial_id": trial.id},
        )
        if result.checkpoint:
            trial.checkpoint = result.checkpoint
        trial.epochs = max(trial.epochs, result.epochs)
        trial.error = result.error
        session.commit()
        self._launch(session, trial.sweep, spec, trial, resume=True)
        return True

    def _finish_sweep(self, session: Session, sweep: Sweep, trials: list[TrialRecord]) -> None:
        succeeded = any(
            trial.state in (TrialState.COMPLETED.value, TrialState.STOPPED.value)
            for trial in trials
        )
        new_state = (SweepState.FINISHED if succeeded else SweepState.FAILED).value
        # Only a still-running sweep finishes: a cancel or pause that came in meanwhile wins.
        finished = session.execute(
            update(Sweep)
            .where(Sweep.id == sweep.id, Sweep.state == SweepState.RUNNING.value)
            .values(state=new_state, finished_at=utcnow())
            .execution_options(synchronize_session=False)
        ).rowcount
        session.commit()
        if not finished:
            return
        self._forget_sweep(sweep.id)
        log.info(
            "sweep %s %s after %d trials",
            sweep.id,
            new_state,
            len(trials),
            extra={"sweep_id": sweep.id},
        )


def _sweep_still_running(session: Session, sweep_id: str) -> bool:
    """Whether the sweep is `running`, holding its row until the caller's commit: an update
    that changes nothing, so a concurrent cancel or pause waits for this transaction."""
    changed = session.execute(
        update(Sweep)
        .where(Sweep.id == sweep_id, Sweep.state == SweepState.RUNNING.value)
        .values(state=Sweep.state)
        .execution_options(synchronize_session=False)
    )
    return changed.rowcount == 1


def may_stop_trials(method: SearchMethod) -> bool:
    """Whether the method has any early-termination rule to consult on reports."""
    overrides_stop = type(method).should_stop is not SearchMethod.should_stop
    return overrides_stop or getattr(method, "stopping_rule", None) is not None


def target_reached(spec: SweepSpec, trials: list[TrialRecord]) -> bool:
    """Whether a trial has reached `metric.target`, or met every target of `metrics` (the
    sweep then starts no more trials)."""
    if spec.metrics is not None:
        return any(
            values is not None and meets_targets(values, spec.metrics)
            for trial in trials
            for values in [objective_values(trial.metrics, spec.metrics, trial.history)]
        )
    if spec.metric is None or spec.metric.target is None:
        return False
    target = spec.metric.target
    for trial in trials:
        if trial.objective is None:
            continue
        if spec.metric.goal == "maximize" and trial.objective >= target:
            return True
        if spec.metric.goal == "minimize" and trial.objective <= target:
            return True
    return False


def trial_record(trial: Trial, history: list[dict[str, Any]] | None = None) -> TrialRecord:
    return TrialRecord(
        number=trial.number,
        hyperparameters=trial.hyperparameters,
        state=trial.state,
        objective=trial.objective,
        epochs=trial.epochs,
        history=history or [],
        parent=int(trial.parent_id.rsplit("-", 1)[1]) if trial.parent_id else None,
        finished_at=trial.finished_at,
        metrics=trial.metrics or {},
    )


# What `suggest` sees of a trial, read as plain rows: no ORM objects per scheduling pass.
_RECORD_COLUMNS = (
    Trial.number,
    Trial.hyperparameters,
    Trial.state,
    Trial.objective,
    Trial.epochs,
    Trial.parent_id,
    Trial.finished_at,
    Trial.metrics,
)


def _record_of_row(row) -> TrialRecord:
    number, hyperparameters, state, objective, epochs, parent_id, finished_at, metrics = row
    return TrialRecord(
        number=number,
        hyperparameters=hyperparameters,
        state=state,
        objective=objective,
        epochs=epochs,
        parent=int(parent_id.rsplit("-", 1)[1]) if parent_id else None,
        finished_at=finished_at,
        metrics=metrics or {},
    )


def _records_with_histories(session: Session, sweep_id: str) -> list[TrialRecord]:
    trials = session.scalars(
        select(Trial).where(Trial.sweep_id == sweep_id).order_by(Trial.number)
    ).all()
    histories = _histories(session, sweep_id)
    return [trial_record(trial, histories.get(trial.id, [])) for trial in trials]


def _histories(session: Session, sweep_id: str) -> dict[str, list[dict[str, Any]]]:
    rows = session.execute(
        select(TrialReport.trial_id, TrialReport.step, TrialReport.metrics)
        .join(Trial, Trial.id == TrialReport.trial_id)
        .where(Trial.sweep_id == sweep_id)
        .order_by(TrialReport.step)
    )
    histories: dict[str, list[dict[str, Any]]] = {}
    for trial_id, step, metrics in rows:
        histories.setdefault(trial_id, []).append({"step": step, "metrics": metrics})
    return histories
