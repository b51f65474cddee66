"""Settings, read from the environment (`KTSWEEP_*`)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """The controller's settings.

    Attributes:
        database_url: SQLAlchemy URL. Default `sqlite:///ktsweep.db`.
        ray_address: Ray cluster to join; None starts a local Ray.
        artifact_dir: Where W&B run folders and checkpoints go (a shared path on clusters).
        api_url: The URL workers use to reach this controller; default derived from host/port.
        api_tokens: Comma-separated bearer tokens for the API.
        open_reads: Let reads through without a token.
        allowed_modules: Comma-separated module prefixes a spec's entry points may name;
            empty means the bundled examples and the working directory's packages.
        allowed_program_dirs: Comma-separated folders (besides the working directory) that a
            `program` sweep's script may come from.
        secret: Secret for per-trial worker tokens; default one kept in the database.
        heartbeat_timeout_s: A running trial silent for longer is declared lost and retried.
        checkpoint_every_s: Seconds between a running trial's resumable checkpoints (saved at
            the end of an epoch; the last epoch always): what a lost trial may have to redo.
        report_every_s: The least time between two background reports of a trial (sweeps
            without an early-termination rule); 0 sends every epoch's report. Default 1.
        api_processes: Processes serving the API (`ktsweep serve --processes`). One of them
            also schedules trials; the others serve reads and worker reports and hand it the
            rest. Default 1.
        access_log: Log every HTTP request (uvicorn's access log). Default on.
    """

    model_config = SettingsConfigDict(env_prefix="KTSWEEP_", extra="ignore")

    database_url: str = "sqlite:///ktsweep.db"
    ray_address: str | None = None
    artifact_dir: Path = Path("ktsweep-artifacts")
    api_url: str | None = None
    api_tokens: str = ""
    open_reads: bool = False
    allowed_modules: str = ""
    allowed_program_dirs: str = ""
    secret: str | None = None
    heartbeat_timeout_s: float = 600.0
    checkpoint_every_s: float = Field(default=10.0, ge=0)
    report_every_s: float = Field(default=1.0, ge=0)
    api_processes: int = Field(default=1, ge=1, le=64)
    access_log: bool = True

    @property
    def wandb_mode(self) -> str:
        return os.environ.get("WANDB_MODE", "offline")

    @property
    def tokens(self) -> list[str]:
        return [token.strip() for token in self.api_tokens.split(",") if token.strip()]
