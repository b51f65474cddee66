"""What the API answers: pydantic schemas of sweeps, trials and reports."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

_PRINTABLE = r"^[\x20-\x7e]*$"


class NodeInfo(BaseModel):
    """The Ray node a trial ran on."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, max_length=64, pattern=_PRINTABLE, description="Ray node id.")
    ip: str | None = Field(None, max_length=64, pattern=_PRINTABLE, description="Node address.")
    hostname: str | None = Field(None, max_length=255, pattern=_PRINTABLE)


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
    node: NodeInfo | None = Field(
        None, description="The Ray node of the trial's latest attempt, once it has started."
    )
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class HistoryEntry(BaseModel):
    step: int
    metrics: dict[str, float | None]


class TrialDetail(TrialOut):
    history: list[HistoryEntry] = Field(default_factory=list)


class ObjectiveOut(BaseModel):
    name: str
    goal: Literal["minimize", "maximize"]


class FrontTrialOut(TrialOut):
    objectives: dict[str, float] = Field(description="The trial's value of each objective.")


class ParetoFrontOut(BaseModel):
    """The best trials of a multi-objective sweep: those no other trial dominates."""

    objectives: list[ObjectiveOut]
    front: list[FrontTrialOut] = Field(
        description="Non-dominated completed or stopped trials, by number (as Optuna's "
        "`study.best_trials`)."
    )


class WarmStartOut(BaseModel):
    """What a sweep's warm start (`prior_sweeps`) taught its search method, and what it
    skipped: prior completed trials outside the new space, or without its metric(s)."""

    prior_sweeps: list[str] = Field(description="The sweeps whose trials were read.")
    learned: int = Field(description="Prior trials the search method learned.")
    skipped_outside_space: int = Field(
        description="Prior trials with a value the new space cannot take, or without one of "
        "its parameters."
    )
    skipped_without_objective: int = Field(
        description="Prior trials that never recorded the new sweep's metric(s)."
    )


class SweepOut(BaseModel):
    id: str
    name: str
    state: str
    spec: dict[str, Any]
    trial_counts: dict[str, int]
    best_trial: TrialOut | None = Field(
        None, description="The best trial by `metric`; null for a multi-objective sweep."
    )
    pareto_front_size: int | None = Field(
        None, description="Trials on the Pareto front of a multi-objective sweep, else null."
    )
    warm_start: WarmStartOut | None = Field(
        None,
        description="What the warm start from `prior_sweeps` learned and skipped, once the "
        "scheduler has built the sweep's search method; null before, or without `prior_sweeps`.",
    )
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


class HeartbeatIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    node: NodeInfo | None = Field(None, description="The node the trial runs on.")


class ReportOut(BaseModel):
    action: Literal["continue", "stop"]


class Problem(BaseModel):
    path: str = Field(description="Where in the request the problem is, e.g. parameters.lr.min")
    msg: str


class ProblemList(BaseModel):
    detail: list[Problem]


class ErrorOut(BaseModel):
    detail: str
