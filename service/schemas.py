"""What the API answers: pydantic schemas of sweeps, trials and reports."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class TrialOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    sweep_id: str
    number: int
    state: str
    hyperparameters: dict[str, Any]
    metrics: dict[str, float | None]
    objective: float | None = None
    epochs: int
    wandb: dict[str, Any] | None = None
    checkpoint: str | None = None
    error: str | None = None
    attempts: int
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class HistoryEntry(BaseModel):
    step: int
    metrics: dict[str, float | None]


class TrialDetail(TrialOut):
    history: list[HistoryEntry] = Field(default_factory=list)


class SweepOut(BaseModel):
    id: str
    name: str
    state: str
    spec: dict[str, Any]
    trial_counts: dict[str, int]
    best_trial: TrialOut | None = None
    created_at: datetime
    finished_at: datetime | None = None


class SweepList(BaseModel):
    items: list[SweepOut]
    next_cursor: str | None = None


class TrialList(BaseModel):
    items: list[TrialOut]
    next_cursor: str | None = None


class ReportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    step: int = Field(ge=0, description="Epoch (or other step) number the metrics belong to.")
    metrics: dict[str, float | None]
    checkpoint: str | None = Field(
        None, description="The trial's latest checkpoint, to resume from if its worker is lost."
    )


class ReportOut(BaseModel):
    action: Literal["continue", "stop"]


class Problem(BaseModel):
    path: str = Field(description="Where in the request the problem is, e.g. parameters.lr.min")
    msg: str


class ProblemList(BaseModel):
    detail: list[Problem]


class ErrorOut(BaseModel):
    detail: str
