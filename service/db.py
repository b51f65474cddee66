"""Database engines and sessions, and connections for async code."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase, sessionmaker
from starlette.concurrency import run_in_threadpool

T = TypeVar("T")


class Base(DeclarativeBase):
    pass


def normalize_url(url: str) -> str:
    """Use the psycopg 3 driver for a plain `postgresql://` URL (it is the one installed)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL and a busy timeout so threads can share it."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **_JSON_CODEC
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection, _record):
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # With WAL, NORMAL never corrupts the database; it only skips an fsync per commit.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **_JSON_CODEC)


# JSON columns (histories, metrics, hyperparameters) are encoded and decoded on every report
# and read; orjson does it several times faster than the standard library.
def json_dumps(value: Any) -> str:
    """JSON text of a value, as the JSON columns store it."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # what orjson refuses (a lone surrogate), the standard library escapes
        return json.dumps(value)


_JSON_CODEC: dict[str, Any] = {"json_serializer": json_dumps, "json_deserializer": orjson.loads}


class AsyncConnections:
    """Runs a function of a (sync) `Connection` from async code without blocking the loop.

    On PostgreSQL the function runs on the event loop itself, over psycopg's asyncio driver
    (SQLAlchemy bridges the sync calls with greenlets): no thread hop per request, and no
    thread waiting for the GIL behind the loop between each statement. SQLite has no asyncio
    driver here, so there the function runs on a worker thread.

    On PostgreSQL the connections are in autocommit mode: a statement is one round trip, with
    no BEGIN, no COMMIT and no ping at checkout. A read on a connection the server closed is
    retried once on a fresh one.

    Args:
        engine: The (sync) engine of the database; the async engine shares its URL.
        pool_size: Connections kept open (PostgreSQL). Default 10.
    """

    def __init__(self, engine: Engine, pool_size: int = 10):
        self.engine = engine
        self._engine: AsyncEngine | None = None
        if engine.dialect.name == "postgresql":
            self._engine = create_async_engine(
                engine.url,
                isolation_level="AUTOCOMMIT",
                pool_size=pool_size,
                max_overflow=0,
                **_JSON_CODEC,
            )

    async def read(self, work: Callable[..., T], *args: Any) -> T:
        """`work(connection, *args)`, which only reads."""
        if self._engine is None:
            return await run_in_threadpool(self._run_sync, work, args, False)
        try:
            async with self._engine.connect() as connection:
                return await connection.run_sync(work, *args)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        async with self._engine.connect() as connection:  # the database restarted: once more
            return await connection.run_sync(work, *args)

    async def write(self, work: Callable[..., T], *args: Any) -> T:
        """`work(connection, *args)`; what it wrote is committed when this returns.

        On PostgreSQL each statement commits on its own (autocommit), so work that must be
        atomic has to be a single statement there (as `sweeps.record_reports` is); on SQLite
        the work runs in one transaction.
        """
        if self._engine is None:
            return await run_in_threadpool(self._run_sync, work, args, True)
        async with self._engine.connect() as connection:
            return await connection.run_sync(work, *args)

    async def dispose(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()

    def _run_sync(self, work: Callable[..., T], args: tuple, transaction: bool) -> T:
        with self.engine.begin() if transaction else self.engine.connect() as connection:
            return work(connection, *args)


def make_sessions(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)


def migrate(engine: Engine) -> None:
    """Bring the database schema up to date (Alembic `upgrade head`)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
