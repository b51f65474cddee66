"""Database engines and sessions, and connections for async code."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson
import psycopg
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase, sessionmaker
from sqlalchemy.pool import NullPool
from sqlalchemy.sql.expression import Executable
from sqlalchemy.util import greenlet_spawn
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


def make_engine(
    url: str, pool_size: int = 5, max_overflow: int = 10, *, pooled: bool = True
) -> Engine:
    """An engine for `url`; SQLite gets WAL and a busy timeout so threads can share it.

    Args:
        url: SQLAlchemy URL; a plain `postgresql://` one gets the psycopg 3 driver.
        pool_size: Connections the pool keeps open (PostgreSQL). Default 5.
        max_overflow: Connections opened beyond `pool_size` when all are busy, closed once
            returned (PostgreSQL). Default 10. A caller finding `pool_size + max_overflow`
            connections out waits for one.
        pooled: False: no pool, each connection closes once returned (for start-up work,
            which would otherwise hold the pool's connections). Default True.
    """
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
    if not pooled:
        return create_engine(url, poolclass=NullPool, **_JSON_CODEC)
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=max_overflow,
        **_JSON_CODEC,
    )


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
    """Database work for async code (the API's hot paths) that never blocks the event loop.

    On PostgreSQL it runs on the event loop itself, over psycopg's asyncio driver: no thread
    hop per request, and no thread waiting for the GIL behind the loop between statements. Its
    connections are in autocommit mode, so a statement is one round trip, with no BEGIN, no
    COMMIT and no ping at checkout. SQLite has no asyncio driver here, so there the work runs
    on worker threads through the (sync) engine.

    Args:
        engine: The (sync) engine of the database; the async engine shares its URL.
        pool_size: Connections kept open (PostgreSQL), and the most it opens: work finding
            them all busy waits for one. Default 25 (`KTSWEEP_DB_POOL_SIZE`).
    """

    def __init__(self, engine: Engine, pool_size: int = 25):
        self.engine = engine
        self._engine: AsyncEngine | None = None
        self._sql: dict[Executable, tuple[str, dict[str, Any]]] = {}
        self.pool_size = pool_size
        if engine.dialect.name == "postgresql":
            self._engine = create_async_engine(
                engine.url,
                isolation_level="AUTOCOMMIT",
                pool_size=pool_size,
                max_overflow=0,
                pool_reset_on_return=None,  # autocommit: no transaction is ever left open
                **_JSON_CODEC,
            )

    async def open(self, warm_up: Callable[..., Awaitable[Any]] | None = None) -> None:
        """Open every pooled connection now (PostgreSQL), before requests come, and run
        `await warm_up(fetch)` on each (the hot reads, say: a new server process first loads
        the tables' catalog entries and plans each statement). Left to the first burst of
        requests, that work for `pool_size` connections at once stalls them all for hundreds
        of milliseconds."""
        if self._engine is None:
            return
        pooled = await asyncio.gather(
            *(self._engine.raw_connection() for _ in range(self.pool_size))
        )
        try:
            if warm_up is not None:
                await asyncio.gather(
                    *(warm_up(self._fetcher(each.driver_connection)) for each in pooled)
                )
        finally:
            for each in pooled:
                await greenlet_spawn(each.close)

    async def read(self, work: Callable[..., Awaitable[T]], *args: Any) -> T:
        """`await work(fetch, *args)`: `await fetch(statement, params)` runs one prebuilt
        SELECT and gives its rows as tuples, on one connection.

        On PostgreSQL the statements go to psycopg as they are (compiled once per statement),
        skipping SQLAlchemy's execution machinery: on the hot read paths it cost more than the
        queries. So a statement's columns must be of types psycopg decodes as SQLAlchemy would
        (text, numbers, JSON, timestamps with time zone) and its parameters plain values. A
        read on a connection the server closed is retried once, on a fresh pool.
        """
        if self._engine is None:
            return await work(self._fetch_on_thread, *args)
        try:
            return await self._read_on(work, args)
        except psycopg.OperationalError as exc:
            if not getattr(exc, "connection_broken", False):
                raise
        return await self._read_on(work, args)  # on a fresh pool

    async def run(self, work: Callable[..., Awaitable[T]], *args: Any) -> T:
        """`await work(fetch, *args)` as for `read`, for statements that write: on PostgreSQL
        each commits on its own (autocommit), so work that must be atomic has to be one
        statement; on SQLite each runs in a transaction of its own. Not retried."""
        if self._engine is None:
            return await work(self._fetch_on_thread, *args)
        return await self._read_on(work, args)

    @property
    def runs_statements_on_the_loop(self) -> bool:
        """Whether `read` and `run` go to the database from the event loop (PostgreSQL)."""
        return self._engine is not None

    async def _read_on(self, work: Callable[..., Awaitable[T]], args: tuple) -> T:
        pooled = await self._engine.raw_connection()
        connection = pooled.driver_connection
        try:
            return await work(self._fetcher(connection), *args)
        except psycopg.OperationalError as exc:
            if connection.broken:
                exc.connection_broken = True
                await greenlet_spawn(pooled.invalidate, exc)
                # The database restarted, say: every pooled connection is as dead.
                await self._engine.dispose()
            raise
        finally:
            await greenlet_spawn(pooled.close)

    def _fetcher(self, connection: psycopg.AsyncConnection):
        """`fetch(statement, params)` on one connection: its rows as tuples."""

        async def fetch(statement: Executable, params: dict[str, Any]) -> list[tuple]:
            sql, defaults = self._compiled(statement)
            async with connection.cursor() as cursor:
                await cursor.execute(sql, {**defaults, **params}, prepare=True)
                return await cursor.fetchall()

        return fetch

    def _compiled(self, statement: Executable) -> tuple[str, dict[str, Any]]:
        compiled = self._sql.get(statement)
        if compiled is None:
            done = statement.compile(dialect=self._engine.dialect)
            compiled = self._sql[statement] = (str(done), dict(done.params))
        return compiled

    async def _fetch_on_thread(self, statement: Executable, params: dict[str, Any]) -> list:
        def fetch() -> list:
            with self.engine.begin() as connection:
                return connection.execute(statement, params).all()

        return await run_in_threadpool(fetch)

    async def write(self, work: Callable[..., T], *args: Any) -> T:
        """`work(connection, *args)` with a (sync) `Connection`; what it wrote is committed
        when this returns (on PostgreSQL SQLAlchemy bridges the sync calls with greenlets).

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
    # Alembic's options go through configparser, where "%" starts an interpolation: a URL
    # with percent-encoding (a password's special characters, a socket folder as the host)
    # must have its "%" doubled.
    url = engine.url.render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
