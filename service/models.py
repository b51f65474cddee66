"""SQL tables: sweeps, their trials, and each trial's per-step reports."""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ktsweep.lifecycle import ACTIVE_STATES, INITIAL_STATE, TrialState
from ktsweep.service.db import Base

__all__ = [
    "ACTIVE_TRIAL_STATES",
    "ControllerSetting",
    "Sweep",
    "SweepState",
    "Trial",
    "TrialReport",
    "TrialState",
    "UTCDateTime",
    "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """A timestamp that always comes back timezone-aware in UTC (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


class SweepState(str, enum.Enum):
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    FAILED = "failed"


# A trial's states and their transitions live in `ktsweep.lifecycle` (the workers use them too).
ACTIVE_TRIAL_STATES = ACTIVE_STATES


class Sweep(Base):
    __tablename__ = "sweeps"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), index=True, default=SweepState.RUNNING.value)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # What its warm start (`prior_sweeps`) taught its search method and skipped, written by
    # the scheduler when it builds the method (`warm_start.store_warm_start`); None before.
    warm_start: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    trials: Mapped[list[Trial]] = relationship(back_populates="sweep", order_by="Trial.number")


class Trial(Base):
    __tablename__ = "trials"
    __table_args__ = (
        UniqueConstraint("sweep_id", "number"),
        Index("ix_trials_sweep_state", "sweep_id", "state"),
        Index("ix_trials_sweep_objective", "sweep_id", "objective"),
    )

    id: Mapped[str] = mapped_column(String(48), primary_key=True)
    sweep_id: Mapped[str] = mapped_column(ForeignKey("sweeps.id"))
    number: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default=INITIAL_STATE.value)
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    objective: Mapped[float | None] = mapped_column(Float)
    epochs: Mapped[int] = mapped_column(Integer, default=0)
    wandb: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    checkpoint: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Where the trial's latest attempt ran: {"id": Ray node id, "ip": ..., "hostname": ...}.
    node: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Set by methods that continue a trial (Hyperband): the fit overrides and the parent trial.
    fit: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    parent_id: Mapped[str | None] = mapped_column(String(48))
    # Last sign of life from the trial's worker (a report or a heartbeat).
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    sweep: Mapped[Sweep] = relationship(back_populates="trials")
    reports: Mapped[list[TrialReport]] = relationship(
        back_populates="trial", order_by="TrialReport.step"
    )


class TrialReport(Base):
    __tablename__ = "trial_reports"
    __table_args__ = (UniqueConstraint("trial_id", "step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    trial_id: Mapped[str] = mapped_column(ForeignKey("trials.id"))
    step: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    trial: Mapped[Trial] = relationship(back_populates="reports")


class ControllerSetting(Base):
    """Controller-wide values that must survive restarts (e.g. the trial-token secret)."""

    __tablename__ = "controller_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
