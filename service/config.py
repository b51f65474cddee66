"""Settings, read from the environment (`KTSWEEP_*`)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, ValidationError
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
        allowed_origins: Comma-separated web origins (`https://host:port`) whose pages may
            write to the API besides the controller's own (a dashboard served elsewhere).
            Default none.
        allow_any_command: Let a `program` sweep's `command` start any executable, with any
            interpreter options (`python -c ...`). Default off: a command starts the sweep's
            program (`${interpreter} ${program}`, `python ${program}` or `${program}`).
        secret: Secret for per-trial worker tokens; default one kept in the database.
        heartbeat_timeout_s: A running trial silent for longer is declared lost and retried.
        checkpoint_every_s: Seconds between a running trial's resumable checkpoints (saved at
            the end of an epoch; the last epoch always): what a lost trial may have to redo.
        report_every_s: The least time between two background reports of a trial (sweeps
            without an early-termination rule); 0 sends every epoch's report. Default 1.
        api_workers: Processes serving the API without a scheduler (`ktsweep serve
            --no-scheduler --workers N`), under uvicorn's own process manager. Default 1.
        takeover_poll_s: How often a standby `ktsweep scheduler` tries to become the active
            one: with the active scheduler killed, a standby takes over within about this
            many seconds. Default 2.
        scheduler_poll_s: The most seconds the active scheduler goes without looking for
            sweeps submitted, paused, resumed or cancelled by the API's processes when no
            wake-up (PostgreSQL `NOTIFY`) reached it. Default 5.
        access_log: Log every HTTP request (uvicorn's access log). Default on.
        max_spec_bytes: The largest sweep spec body (`POST /sweeps`) accepted, in bytes; a
            larger one gets 413 before it is read. Default 1 MiB (1048576).
        max_report_bytes: The largest body of any other request (a worker's report or
            heartbeat above all), in bytes; a larger one gets 413 before it is read or its
            token checked. Default 16 KiB (16384).
        max_spec_depth: How deeply a spec's mappings and lists may nest. Default 32.
        max_spec_nodes: How many values (mappings, lists, scalars) a spec may hold once its
            YAML aliases are expanded. Default 100000.
        max_grid_size: The most combinations a grid sweep may have. Default 1000000.
        max_header_bytes: The largest request line plus headers, in bytes; a larger head gets
            431. Default 16 KiB (16384).
        header_timeout_s: Seconds a connection may take to send a request's line and headers,
            counted from when it opens or its request starts; a slower one is closed (408).
            Default 10.
        max_concurrency: The most connections and requests in flight per API process; one more
            gets 503. Default 1000.
        db_pool_size: PostgreSQL connections each process keeps for the API's hot paths (reads,
            reports), all opened at start; a request finding them all busy waits for one.
            Default 25.
        db_sync_pool_size: PostgreSQL connections each process keeps for the rest (the
            scheduler, the routes that write with a session, `/readyz`, `/metrics`). Default 5.
        db_sync_max_overflow: Connections the rest may open beyond `db_sync_pool_size` at busy
            moments, closed once returned. Default 10. A process never holds more than
            `db_pool_size + db_sync_pool_size + db_sync_max_overflow` pooled connections (a
            scheduler one more, for its lease); processes times that must fit PostgreSQL's
            `max_connections` (100 by default).
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
    allow_any_command: bool = False
    allowed_origins: str = ""
    secret: str | None = None
    heartbeat_timeout_s: float = 600.0
    checkpoint_every_s: float = Field(default=10.0, ge=0)
    report_every_s: float = Field(default=1.0, ge=0)
    api_workers: int = Field(default=1, ge=1, le=64)
    takeover_poll_s: float = Field(default=2.0, gt=0, le=60)
    scheduler_poll_s: float = Field(default=5.0, gt=0, le=300)
    access_log: bool = True
    max_spec_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_report_bytes: int = Field(default=16 * 1024, ge=1024)
    max_spec_depth: int = Field(default=32, ge=8, le=200)
    max_spec_nodes: int = Field(default=100_000, ge=100)
    max_grid_size: int = Field(default=1_000_000, ge=1)
    max_header_bytes: int = Field(default=16 * 1024, ge=1024)
    header_timeout_s: float = Field(default=10.0, gt=0)
    max_concurrency: int = Field(default=1000, ge=2)
    db_pool_size: int = Field(default=25, ge=1, le=1000)
    db_sync_pool_size: int = Field(default=5, ge=1, le=1000)
    db_sync_max_overflow: int = Field(default=10, ge=0, le=1000)

    @property
    def wandb_mode(self) -> str:
        return os.environ.get("WANDB_MODE", "offline")

    @property
    def origins(self) -> list[str]:
        return [origin.strip() for origin in self.allowed_origins.split(",") if origin.strip()]

    @property
    def tokens(self) -> list[str]:
        return [token.strip() for token in self.api_tokens.split(",") if token.strip()]


class SettingsError(ValueError):
    """A `KTSWEEP_*` setting has a value the controller cannot use; the message has one line
    per bad setting, naming its environment variable and its default."""


def load_settings(**overrides) -> Settings:
    """The settings from the environment (and `overrides`), or `SettingsError` saying which
    variable is wrong and how to fix it, instead of pydantic's report."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError("\n".join(_problem(error) for error in exc.errors())) from None


def _problem(error) -> str:
    """One line for one bad setting: `KTSWEEP_DB_POOL_SIZE='0': it should be ...`."""
    name = str(error["loc"][0]) if error["loc"] else ""
    field = Settings.model_fields.get(name)
    default = "" if field is None else f" ({field.default})"
    problem = error["msg"].replace("Input should", "it should", 1)
    return (
        f"KTSWEEP_{name.upper()}={error.get('input')!r}: {problem}; "
        f"set a valid value, or unset it for the default{default}."
    )
