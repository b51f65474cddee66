"""Keeps each running sweep's trials going on Ray: never more than `parallelism` at once, never
more than `run_cap` in all, and the next trial starts the moment one ends."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service import sweeps as store
from service.models import ACTIVE_TRIAL_STATES, Sweep, SweepState, Trial, TrialState, utcnow
from service.search import SearchMethod, TrialRecord, make_search_method
from service.spec import SweepSpec
from worker.trial_spec import TrialResult, TrialSpec

log = logging.getLogger(__name__)


class TrialExecutor(Protocol):
    def start(self) -> None: ...
    def launch(self, spec: TrialSpec, on_done) -> None: ...
    def cancel(self, trial_id: str) -> None: ...


class Scheduler:
    """Starts trials for running sweeps and records how they end.

    One background thread does all scheduling. It sleeps until something happens — a sweep is
    submitted, or a trial ends (the executor calls back at once) — then fills every sweep's
    free slots.

    Args:
        sessions: Database session factory.
        executor: Runs trials (e.g. `worker.RayTrialExecutor`).
        api_url: The controller's URL that workers report to.
        artifact_dir: Folder for W&B runs and checkpoints.
        wandb_mode: W&B mode when a spec does not set one.
    """

    def __init__(
        self,
        sessions: sessionmaker,
        executor: TrialExecutor,
        api_url: str | None,
        artifact_dir: Path,
        wandb_mode: str = "offline",
    ):
        self.sessions = sessions
        self.executor = executor
        self.api_url = api_url
        self.artifact_dir = Path(artifact_dir).resolve()
        self.wandb_mode = wandb_mode
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._methods: dict[str, SearchMethod] = {}

    def start(self) -> None:
        self.executor.start()
        self._thread = threading.Thread(target=self._loop, name="ktsweep-scheduler", daemon=True)
        self._thread.start()
        self.notify()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def notify(self) -> None:
        """Wake the scheduler: something changed (a new sweep, a finished trial)."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            # The timeout is only a safety net; every change calls `notify`.
            self._wake.wait(timeout=30)
            self._wake.clear()
            if self._stopping.is_set():
                break
            try:
                self.schedule_pending_trials()
            except Exception:
                log.exception("scheduling pass failed")

    def schedule_pending_trials(self) -> None:
        """One pass: start trials wherever a running sweep has a free slot; finish done sweeps."""
        with self.sessions() as session:
            sweep_ids = session.scalars(
                select(Sweep.id).where(Sweep.state == SweepState.RUNNING.value)
            ).all()
        for sweep_id in sweep_ids:
            with self.sessions() as session:
                self._fill_sweep(session, store.get_sweep(session, sweep_id))

    def _fill_sweep(self, session: Session, sweep: Sweep) -> None:
        spec = store.sweep_spec(sweep)
        method = self._methods.get(sweep.id) or self._methods.setdefault(
            sweep.id, make_search_method(spec)
        )
        trials = list(session.scalars(select(Trial).where(Trial.sweep_id == sweep.id)))
        active = sum(trial.state in ACTIVE_TRIAL_STATES for trial in trials)
        run_cap = spec.run_cap if spec.run_cap is not None else float("inf")
        exhausted = False
        while active < spec.parallelism and len(trials) < run_cap:
            records = [_record(trial) for trial in trials]
            hyperparameters = method.suggest(len(trials), records)
            if hyperparameters is None:
                exhausted = True
                break
            trial = self._create_trial(session, sweep, len(trials), hyperparameters)
            trials.append(trial)
            active += 1
            self._launch(session, sweep, spec, trial)
        if active == 0 and (exhausted or len(trials) >= run_cap):
            self._finish_sweep(session, sweep, trials)

    def _create_trial(
        self, session: Session, sweep: Sweep, number: int, hyperparameters: dict[str, Any]
    ) -> Trial:
        trial = Trial(
            id=f"{sweep.id}-{number}",
            sweep_id=sweep.id,
            number=number,
            state=TrialState.PENDING.value,
            hyperparameters=hyperparameters,
            metrics={},
        )
        session.add(trial)
        session.commit()
        return trial

    def trial_spec(self, sweep: Sweep, spec: SweepSpec, trial: Trial) -> TrialSpec:
        """What the worker is told about `trial`."""
        assert spec.trial is not None
        wandb = spec.wandb
        return TrialSpec(
            trial_id=trial.id,
            hyperparameters=trial.hyperparameters,
            hypermodel=spec.trial.hypermodel,
            data=spec.trial.data,
            sweep_id=sweep.id,
            sweep_name=sweep.name,
            fit=spec.trial.fit.model_dump(exclude_none=True),
            metric=spec.metric.name if spec.metric else None,
            wandb={
                "project": wandb.project or spec.project or "ktsweep",
                "entity": wandb.entity or spec.entity,
                "mode": wandb.mode or self.wandb_mode,
                "dir": str(self.artifact_dir),
                "tags": wandb.tags,
            },
            callbacks=spec.callbacks.model_dump(),
            checkpoint_dir=str(self.artifact_dir / "checkpoints" / sweep.id / trial.id),
            report_url=self.api_url,
            resources=spec.trial.resources.model_dump(exclude_none=True),
        )

    def _launch(self, session: Session, sweep: Sweep, spec: SweepSpec, trial: Trial) -> None:
        trial.state = TrialState.RUNNING.value
        trial.started_at = utcnow()
        trial.attempts += 1
        session.commit()
        try:
            self.executor.launch(self.trial_spec(sweep, spec, trial), self._on_trial_done)
        except Exception as exc:
            log.exception("could not launch trial %s", trial.id)
            trial.state = TrialState.FAILED.value
            trial.error = f"could not start the trial on the cluster: {exc}"
            trial.finished_at = utcnow()
            session.commit()

    def _on_trial_done(self, trial_id: str, result: TrialResult) -> None:
        with self.sessions() as session:
            store.record_trial_result(session, trial_id, result.to_dict())
        log.info("trial %s ended: %s", trial_id, result.state)
        self.notify()

    def _finish_sweep(self, session: Session, sweep: Sweep, trials: list[Trial]) -> None:
        succeeded = any(
            trial.state in (TrialState.COMPLETED.value, TrialState.STOPPED.value)
            for trial in trials
        )
        sweep.state = (SweepState.FINISHED if succeeded else SweepState.FAILED).value
        sweep.finished_at = utcnow()
        session.commit()
        self._methods.pop(sweep.id, None)
        log.info("sweep %s %s after %d trials", sweep.id, sweep.state, len(trials))


def _record(trial: Trial) -> TrialRecord:
    return TrialRecord(
        number=trial.number,
        hyperparameters=trial.hyperparameters,
        state=trial.state,
        objective=trial.objective,
    )
