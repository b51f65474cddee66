"""Launching trials: what a worker is told (`TrialSpec`), the launch itself, retries of lost
trials, and recovery after a controller restart."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import case, select, update
from sqlalchemy.orm import Session, sessionmaker

from ktsweep.lifecycle import INITIAL_STATE
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
from ktsweep.service.report_answers import ReportAnswers, may_stop_trials
from ktsweep.service.scheduling.sweep_runtime import SweepRuntimes
from ktsweep.service.search import SearchMethod, Suggestion
from ktsweep.service.spec import SweepSpec, TrialSection, is_program_sweep
from ktsweep.service.trial_executor import TrialExecutor
from ktsweep.service.trial_states import move_trials, start_trials
from ktsweep.worker.last_checkpoint import last_checkpoint_record, read_last_checkpoint
from ktsweep.worker.trial_spec import TrialResult, TrialSpec

log = logging.getLogger(__name__)

# `on_done(trial_id, result, attempt)`: how an attempt of a trial ended.
AttemptDone = Callable[[str, TrialResult, int], None]


class TrialLauncher:
    """Hands trials to the executor: builds each trial's spec, launches it while its sweep runs,
    relaunches a lost trial from its last checkpoint, and after a restart relaunches the trials
    the old controller was running.

    Every launch counts as an attempt (`trials.attempts`); the executor's callbacks carry the
    attempt, so the end of an attempt already given up on is told apart (`on_done`).

    Args:
        sessions: Database session factory.
        executor: Runs the trials.
        runtimes: What the scheduler keeps of each sweep (its lanes, its unlaunched trials).
        method_for: The sweep's search method (`Scheduler.method_for`).
        answers: The answers to reports (whether a sweep's reports wait for one).
        on_done: Called with each attempt's end.
        api_url: The controller's URL that workers report to.
        artifact_dir: Folder for W&B runs and checkpoints.
        wandb_mode: W&B mode when a spec does not set one. Default "offline".
        secret: Secret that signs each trial's report token.
        checkpoint_every_s: Seconds between a trial's resumable checkpoints. Default 0: every
            epoch.
        report_every_s: The least time between two background reports of a trial. Default 1.
        metrics: Prometheus metrics to update, or None.
    """

    def __init__(
        self,
        sessions: sessionmaker,
        executor: TrialExecutor,
        runtimes: SweepRuntimes,
        method_for: Callable[[Sweep], SearchMethod],
        answers: ReportAnswers,
        on_done: AttemptDone,
        api_url: str | None,
        artifact_dir: Path,
        wandb_mode: str = "offline",
        secret: str = "",
        checkpoint_every_s: float = 0.0,
        report_every_s: float = 1.0,
        metrics: Metrics | None = None,
    ):
        self.sessions = sessions
        self.executor = executor
        self.runtimes = runtimes
        self.method_for = method_for
        self.answers = answers
        self.on_done = on_done
        self.api_url = api_url
        self.artifact_dir = Path(artifact_dir).resolve()
        self.wandb_mode = wandb_mode
        self.secret = secret
        self.checkpoint_every_s = checkpoint_every_s
        self.report_every_s = report_every_s
        self.metrics = metrics
        # Trials that started in lanes, not yet marked running (see `_trial_started`).
        self._starts: list[tuple[str, int, Any]] = []
        self._starts_lock = threading.Lock()

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
                    self.runtimes(trial.sweep_id).unlaunched.add(trial.number)
                    continue
                log.warning(
                    "resuming trial %s after a controller restart",
                    trial.id,
                    extra={"sweep_id": trial.sweep_id, "trial_id": trial.id},
                )
                trial.attempts -= 1  # the relaunch below counts it again
                self.launch(session, trial.sweep, store.sweep_spec(trial.sweep), trial, resume=True)

    def create_trial(
        self,
        session: Session,
        sweep: Sweep,
        number: int,
        suggestion: Suggestion,
    ) -> Trial:
        """A new trial of the sweep, in its first state (added to `session`, committed with its
        launch); a continuation (Hyperband) starts from its parent's latest checkpoint."""
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
            state=INITIAL_STATE.value,
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

    def reports_need_answers(self, sweep: Sweep) -> bool:
        """Whether the sweep's reports can be answered "stop" (it has an early-termination
        rule): only then must a worker wait for each answer. Learned from the scheduling
        method, so `answers` builds its own only for a sweep with a rule."""
        decides = self.answers.decides_on_reports.get(sweep.id)
        if decides is None:
            decides = may_stop_trials(self.method_for(sweep))
            self.answers.decides_on_reports[sweep.id] = decides
        return decides

    def _reports_wait(self, sweep: Sweep) -> bool:
        try:
            return self.reports_need_answers(sweep)
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

    def launch(
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
        lanes = self.lanes_of(sweep)
        starts_now = not lanes or self.executor.has_idle_lane(sweep.id, lanes)
        self._mark_started(session, trial, starts_now)
        trial.attempts += 1
        attempt = trial.attempts
        if not _sweep_still_running(session, sweep.id):
            session.rollback()
            return False
        session.commit()
        if self.metrics is not None:
            self.metrics.trials_launched.inc()

        def on_done(trial_id: str, result: TrialResult) -> None:
            self.on_done(trial_id, result, attempt)

        def on_start(trial_id: str) -> None:
            self._trial_started(trial_id, attempt)

        try:
            if lanes:
                started = self.executor.launch(
                    trial_spec, on_done, group=sweep.id, lanes=lanes, on_start=on_start
                )
                session.refresh(trial)
                if started != starts_now and trial.state in ACTIVE_TRIAL_STATES:
                    self._mark_started(session, trial, started)  # a lane freed or filled
                    session.commit()
            else:
                self.executor.launch(trial_spec, on_done)
        except Exception as exc:
            log.exception("could not launch trial %s", trial.id)
            move_trials(
                session,
                trial.id,
                TrialState.FAILED,
                error=f"could not start the trial on the cluster: {exc}",
                finished_at=utcnow(),
            )
            session.commit()
            return True
        session.commit()  # a fresh read: a cancel may have committed since the launch's commit
        state = session.scalar(select(Sweep.state).where(Sweep.id == sweep.id))
        if state == SweepState.CANCELLED.value:
            self.executor.cancel(trial.id)
            return False
        return True

    @staticmethod
    def _mark_started(session: Session, trial: Trial, started: bool) -> None:
        """`running` from now, or `pending` while it waits in a lane to start."""
        if started:
            trial.heartbeat_at = now = utcnow()
            start_trials(session, trial.id, now)  # a relaunched running trial stays running
        else:
            move_trials(session, trial.id, TrialState.PENDING, only_from=[TrialState.RUNNING.value])

    def _trial_started(self, trial_id: str, attempt: int) -> None:
        """A trial that waited in a lane started (the trial ahead of it ended). The executor
        reports the end of that trial next, on the same thread: the start is written in the
        same transaction (`_write_starts`)."""
        with self._starts_lock:
            self._starts.append((trial_id, attempt, utcnow()))

    def write_starts(self, session: Session) -> None:
        """Mark the trials that started in lanes `running` (in the caller's transaction)."""
        with self._starts_lock:
            starts, self._starts = self._starts, []
        for trial_id, attempt, at in starts:
            start_trials(session, trial_id, at, attempt=attempt, heartbeat_at=at)

    def lanes_of(self, sweep: Sweep, method: SearchMethod | None = None) -> int:
        """How many lanes the sweep's trials run in: `parallelism` when its method suggests
        ahead and the executor has lanes (each slot's next trial then waits in the executor,
        submitted the moment the slot frees), else 0 (each trial launched when a slot frees)."""
        runtime = self.runtimes(sweep.id)
        if runtime.lanes is None:
            method = method or self.method_for(sweep)
            ahead = method.suggests_ahead
            runtime.lanes = runtime.spec_of(sweep).parallelism if ahead else 0
        return runtime.lanes

    def withdraw(self, sweep_id: str) -> None:
        """Take back the sweep's trials waiting in lanes; each comes back "withdrawn"."""
        runtime = self.runtimes.get(sweep_id)
        if runtime is not None and runtime.lanes:
            self.executor.withdraw(sweep_id)

    def delete_never_started(self, session: Session, sweep_id: str) -> set[int]:
        """Delete the sweep's unlaunched trials that never started (it reached its target):
        returns their numbers. One that ran before (lost, then taken back) still finishes."""
        runtime = self.runtimes(sweep_id)
        unlaunched = runtime.unlaunched
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
            runtime.unfinished.difference_update(never_started)
        return never_started

    def retry(self, session: Session, trial: Trial, result: TrialResult) -> bool:
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
        self.launch(session, trial.sweep, spec, trial, resume=True)
        return True


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
