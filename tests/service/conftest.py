"""Service tests run against SQLite and the PostgreSQL on this machine (a fresh database each)."""

from __future__ import annotations

import functools
import os
import uuid
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text

POSTGRES_ADMIN_URL = os.environ.get(
    "KTSWEEP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@functools.cache
def postgres_unreachable() -> str | None:
    """Why the test PostgreSQL can't be used, or None when it can."""
    try:
        engine = create_engine(POSTGRES_ADMIN_URL, connect_args={"connect_timeout": 5})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # any failure to connect means: no PostgreSQL here
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return None


def require_postgres() -> None:
    """Skip the test when no PostgreSQL is reachable, unless this run requires one (CI)."""
    reason = postgres_unreachable()
    if reason is None:
        return
    message = (
        f"PostgreSQL at {POSTGRES_ADMIN_URL} is not reachable ({reason}); start one, or point "
        "KTSWEEP_TEST_POSTGRES_URL at one"
    )
    if os.environ.get("KTSWEEP_TEST_REQUIRE_POSTGRES") == "1":
        pytest.fail(message + " (KTSWEEP_TEST_REQUIRE_POSTGRES=1: this run must test it)")
    pytest.skip(message)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """A URL of an empty database, of each kind in turn."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ktsweep.db'}"
        return
    with empty_postgres_database() as url:
        yield url


@contextmanager
def empty_postgres_database(prefix: str = "ktsweep_test"):
    """The URL of a new, empty PostgreSQL database, dropped afterwards (skips, or fails in CI,
    where none is reachable)."""
    require_postgres()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
