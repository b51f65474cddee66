"""Keeps each running sweep's trials going: never more than `parallelism` at once, never more
than `run_cap` in all, and the next trial starts the moment one ends.

The `Scheduler` is the loop. Its parts (`ktsweep.service.scheduling`): each sweep's runtime
(`SweepRuntime`), the launcher of trials (`TrialLauncher`), and the answers to reports
(`ktsweep.service.report_answers.ReportAnswers`). A trial's states: `ktsweep.lifecycle`.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, object_session, sessionmaker

from ktsweep.service import sweeps as store
from ktsweep.service.models import (
    ACTIVE_TRIAL_STATES,
    Sweep,
    SweepState,
    Trial,
    TrialState,
    utcnow,
)
from ktsweep.service.observability import Metrics
from ktsweep.service.pareto import meets_targets, objective_values
from ktsweep.service.report_answers import ReportAnswers, may_stop_trials
from ktsweep.service.report_writer import ReportWriter
from ktsweep.service.scheduling.sweep_runtime import SweepRuntimes
from ktsweep.service.scheduling.trial_launcher import TrialLauncher
from ktsweep.service.search import SearchMethod, Suggestion, TrialRecord
from ktsweep.service.search.warm_start import prior_records, store_warm_start
from ktsweep.service.spec import SweepSpec
from ktsweep.service.sweeps import ReportIn
from ktsweep.service.trial_executor import TrialExecutor
from ktsweep.service.trial_records import records_with_histories, trial_record
from ktsweep.service.trial_states import move_trials
from ktsweep.worker.trial_spec import TrialResult, TrialSpec

log = logging.getLogger(__name__)

# The end of an attempt whose worker process or node died (kept here for older imports).
LOST = TrialState.LOST.value


class Scheduler:
    """Starts trials for running sweeps, relays early-stopping decisions, records how trials end.

    One background thread does all scheduling. It sleeps until something happens — a sweep is
    submitted, or a trial ends (the executor calls back at once) — then fills every sweep's
    free slots. What it keeps of each sweep is one `SweepRuntime`; launching is the
    `TrialLauncher`'s; reports are answered from the database (`ReportAnswers`).

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
        self.secret = secret
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.metrics = metrics
        self.runtimes = SweepRuntimes()
        # Stores reports and answers them from the database (any API process can, too).
        self.answers = ReportAnswers(sessions, metrics)
        self.launcher = TrialLauncher(
            sessions,
            executor,
            self.runtimes,
            self.method_for,
            self.answers,
            self._on_trial_done,
            api_url=api_url,
            artifact_dir=artifact_dir,
            wandb_mode=wandb_mode,
            secret=secret,
            checkpoint_every_s=checkpoint_every_s,
            report_every_s=report_every_s,
            metrics=metrics,
        )
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
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
        self.runtimes(sweep_id).slot_freed_at = time.monotonic()
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
        checkpoint, then those that waited to start (`TrialLauncher.recover_running_trials`)."""
        self.launcher.recover_running_trials()

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
        return self.runtimes.method_for(sweep, self._trial_records, spec, self._prior_records)

    def _prior_records(self, sweep: Sweep, spec: SweepSpec) -> list[TrialRecord]:
        """The completed trials of the sweep's `prior_sweeps` that ended before it was made (so
        a restarted controller tells its method the same ones)."""
        with self.sessions() as session:
            return prior_records(session, spec.prior_sweeps, finished_before=sweep.created_at)

    def _trial_records(self, sweep: Sweep) -> list[TrialRecord]:
        """Every trial of the sweep, with its history, as search methods see them."""
        session = object_session(sweep)
        if session is None:
            with self.sessions() as own_session:
                return records_with_histories(own_session, sweep.id)
        return records_with_histories(session, sweep.id)

    def schedule_pending_trials(self) -> None:
        """One pass: start trials wherever a running sweep has a free slot; finish done sweeps."""
        with self.sessions() as session:
            states = dict(
                session.execute(
                    select(Sweep.id, Sweep.state).where(
                        Sweep.state.in_([SweepState.RUNNING.value, SweepState.PAUSED.value])
                    )
                ).all()
            )
        for gone in self.runtimes.kept() - states.keys():  # ended or cancelled
            self._forget_sweep(gone)
        for sweep_id in [id for id, state in states.items() if state == SweepState.RUNNING]:
            with self.sessions() as session:
                # Locked (where the database can) so a concurrent cancel or pause waits for us.
                sweep = session.scalars(
                    select(Sweep).where(Sweep.id == sweep_id).with_for_update()
                ).first()
                if sweep is not None and sweep.state == SweepState.RUNNING.value:
                    self._fill_sweep(session, sweep)
        self._store_warm_starts()

    def _store_warm_starts(self) -> None:
        """Store what the warm starts of the methods built since the last pass learned and
        skipped, for the API (`Sweep.warm_start`). Written here, after the sweep's lock is
        released: a second session writing the locked row would wait for itself."""
        for sweep_id, shown in self.runtimes.unstored_warm_starts().items():
            with self.sessions() as session:
                store_warm_start(session, sweep_id, shown)
                session.commit()

    def _fill_sweep(self, session: Session, sweep: Sweep) -> None:
        """Start trials in the sweep's free slots; finish the sweep when it is done."""
        runtime = self.runtimes(sweep.id)
        spec = runtime.spec_of(sweep)
        method = self.method_for(sweep, spec)
        trials = runtime.trials(session)
        active = sum(trial.state in ACTIVE_TRIAL_STATES for trial in trials)
        run_cap = spec.run_cap if spec.run_cap is not None else float("inf")
        out_of_trials = target_reached(spec, trials)
        if out_of_trials:
            # No new trial starts any more: those waiting to start never will.
            self.launcher.withdraw(sweep.id)
            deleted = self.launcher.delete_never_started(session, sweep.id)
            if deleted:
                trials = [trial for trial in trials if trial.number not in deleted]
                active -= len(deleted)
        unlaunched = sorted(runtime.unlaunched)
        # With lanes, each slot also holds its next trial, ready to start in the slot.
        lanes = self.launcher.lanes_of(sweep, method)
        limit = spec.parallelism * (2 if lanes else 1)
        launched = active - len(unlaunched)
        for number in unlaunched:
            if launched >= limit:
                break
            trial = store.get_trial(session, f"{sweep.id}-{number}")
            runtime.unlaunched.discard(number)
            if trial.state != TrialState.PENDING.value:
                continue
            resume = trial.started_at is not None
            if not self.launcher.launch(session, sweep, spec, trial, resume=resume):
                return  # the sweep stopped running meanwhile (cancelled, paused)
            launched += 1
        while not out_of_trials and launched < limit and len(trials) < run_cap:
            suggestion = method.suggest(len(trials), trials)
            if suggestion is None:
                out_of_trials = not method.is_waiting(trials)
                break
            if not isinstance(suggestion, Suggestion):
                suggestion = Suggestion(hyperparameters=suggestion)
            trial = self.launcher.create_trial(session, sweep, len(trials), suggestion)
            trials.append(trial_record(trial))
            runtime.unfinished.add(trial.number)
            active += 1
            launched += 1
            if not self.launcher.launch(session, sweep, spec, trial):
                return  # the sweep stopped running meanwhile: the new trial was not stored
            freed_at, runtime.slot_freed_at = runtime.slot_freed_at, None
            if freed_at is not None and self.metrics is not None:
                self.metrics.scheduling_latency.observe(time.monotonic() - freed_at)
        if active == 0 and (out_of_trials or len(trials) >= run_cap):
            self._finish_sweep(session, sweep, trials)

    def _forget_sweep(self, sweep_id: str) -> None:
        """Drop what is kept of a sweep that has ended: the one clean-up."""
        self.runtimes.forget(sweep_id)
        self.answers.forget(sweep_id)

    async def handle_report(self, writer: ReportWriter, report: ReportIn) -> str:
        """Store a worker's report (group commit) and answer "continue" or "stop"
        (`ReportAnswers.answer`: only a sweep with an early-termination rule costs a decision,
        made from the database)."""
        return await self.answers.answer(writer, report)

    def learn_report_rules(self) -> None:
        """Find out now, for every sweep with trials still going, whether its reports need an
        early-termination decision (`ReportAnswers.learn_report_rules`)."""
        self.answers.learn_report_rules()

    def decide_on_report(self, trial_id: str) -> tuple[str, bool]:
        """The early-termination answer to a report of `trial_id` already stored, and whether
        its sweep has a rule to consult at all."""
        action = self.answers.decide(trial_id)
        sweep_id = trial_id.rsplit("-", 1)[0]
        return action, self.answers.decides_on_reports.get(sweep_id, True)

    def pause_sweep(self, session: Session, sweep_id: str) -> Sweep:
        """Start no new trials for the sweep; running ones finish (those waiting in lanes to
        start are taken back, and start after `resume`)."""
        sweep = store.change_sweep_state(session, sweep_id, "pause")
        self.withdraw_waiting_trials(sweep_id)
        return sweep

    def withdraw_waiting_trials(self, sweep_id: str) -> None:
        """Take back the sweep's trials waiting in lanes to start (a paused sweep's): each
        waits as `pending` again, and starts after `resume`."""
        self.launcher.withdraw(sweep_id)

    def resume_sweep(self, session: Session, sweep_id: str) -> Sweep:
        sweep = store.change_sweep_state(session, sweep_id, "resume")
        self.notify()
        return sweep

    def cancel_sweep(self, session: Session, sweep_id: str) -> Sweep:
        """End the sweep and stop its running trials' workers now.

        The state changes first (its trials with it), then every trial it cancelled is stopped:
        a trial launched before the change is among them, and a launch after it is refused
        (`TrialLauncher.launch`).
        """
        sweep = store.change_sweep_state(session, sweep_id, "cancel")
        self.sweep_cancelled(session, sweep_id, sweep.finished_at)
        return sweep

    def sweep_cancelled(self, session: Session, sweep_id: str, finished_at=None) -> None:
        """Stop the workers of the trials a cancel ended, and forget the sweep: after the
        sweep's state changed, here (`cancel_sweep`) or in an API process. The cancel marked
        the sweep's active trials `cancelled` at the sweep's `finished_at`."""
        query = select(Trial.id).where(
            Trial.sweep_id == sweep_id, Trial.state == TrialState.CANCELLED.value
        )
        if finished_at is not None:
            query = query.where(Trial.finished_at == finished_at)
        for trial_id in session.scalars(query).all():
            self.executor.cancel(trial_id)
        self._forget_sweep(sweep_id)

    def _on_trial_done(self, trial_id: str, result: TrialResult, attempt: int) -> None:
        with self.sessions() as session:
            self.launcher.write_starts(session)
            trial = store.locked_trial(session, trial_id)
            if trial.attempts != attempt or trial.state not in ACTIVE_TRIAL_STATES + (
                TrialState.CANCELLED.value,
            ):
                session.commit()
                return  # the end of an attempt already given up on (lost, then retried)
            if result.state == TrialState.WITHDRAWN:
                if trial.state in ACTIVE_TRIAL_STATES:
                    # Back to waiting, not launched: the next pass (or `resume`) launches it;
                    # its launch does not count as an attempt.
                    move_trials(session, trial.id, TrialState.PENDING)
                    trial.attempts -= 1
                    session.commit()
                    self.runtimes(trial.sweep_id).unlaunched.add(trial.number)
                    self.notify()
                session.commit()
                return
            self._finish_trial(session, trial, result)

    def _finish_trial(self, session: Session, trial: Trial, result: TrialResult) -> None:
        ids = {"sweep_id": trial.sweep_id, "trial_id": trial.id}
        if result.state == LOST and self.launcher.retry(session, trial, result):
            return
        if result.state == LOST:
            result.state = TrialState.FAILED.value
        runtime = self.runtimes(trial.sweep_id)
        spec = runtime.spec_of(trial.sweep)
        metric = spec.metric.name if spec.metric else None
        trial, history = store.record_trial_result(session, trial.id, result.to_dict(), metric)
        sweep_state = session.scalar(select(Sweep.state).where(Sweep.id == trial.sweep_id))
        if sweep_state == SweepState.RUNNING.value:
            self.method_for(trial.sweep, spec).observe(trial_record(trial, history))
        log.info("trial %s ended: %s", trial.id, trial.state, extra=ids)
        if runtime.slot_freed_at is None:
            runtime.slot_freed_at = time.monotonic()
        self.notify()

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

    # What tests and other modules read of the parts, by their older names.

    def trial_spec(self, sweep: Sweep, spec: SweepSpec, trial: Trial, **options) -> TrialSpec:
        """What the worker is told about `trial` (`TrialLauncher.trial_spec`)."""
        return self.launcher.trial_spec(sweep, spec, trial, **options)

    def checkpoint_dir(self, sweep_id: str, trial_id: str) -> Path:
        """A trial's checkpoint folder, under the (shared) artifact folder."""
        return self.launcher.checkpoint_dir(sweep_id, trial_id)

    def _spec_of(self, sweep: Sweep) -> SweepSpec:
        return self.runtimes(sweep.id).spec_of(sweep)

    def _sweep_trials(self, session: Session, sweep_id: str) -> list[TrialRecord]:
        return self.runtimes(sweep_id).trials(session)

    def _reports_need_answers(self, sweep: Sweep) -> bool:
        return self.launcher.reports_need_answers(sweep)

    def _withdraw(self, sweep_id: str) -> None:
        self.withdraw_waiting_trials(sweep_id)


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


# Older names of what moved to their own modules (kept for their importers).
_records_with_histories = records_with_histories
__all__ = [
    "LOST",
    "ReportAnswers",
    "Scheduler",
    "TrialExecutor",
    "may_stop_trials",
    "target_reached",
    "trial_record",
]
