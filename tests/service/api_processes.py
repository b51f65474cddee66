"""`ktsweep serve --no-scheduler` in a subprocess against a real PostgreSQL, ready to take
requests, and running trials stored for it to take reports for."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ktsweep.service.db import make_engine, make_sessions, migrate
from ktsweep.service.leadership import SchedulerLease
from ktsweep.service.models import Sweep, Trial
from tests.e2e.conftest import ServerProcess
from tests.service.helpers import DIGITS_SPEC


@contextmanager
def api_server(
    database_url: str, workdir: Path, args: tuple[str, ...] = (), **env: str
) -> Iterator[tuple[ServerProcess, SchedulerLease]]:
    """`ktsweep serve --no-scheduler *args` with `env`, started and ready; this test holds the
    scheduler lease meanwhile (the API is ready only while a scheduler is active)."""
    engine = make_engine(database_url)
    migrate(engine)  # the lease's row lives in the schema the API would make
    engine.dispose()
    lease = SchedulerLease(database_url)
    assert lease.try_acquire()
    server = ServerProcess(
        workdir, database_url=database_url, args=("--no-scheduler", *args), **env
    )
    try:
        server.start()
        yield server, lease
    finally:
        server.stop()
        lease.release()


def store_running_trials(database_url: str, count: int) -> list[str]:
    """A running sweep without an early-termination rule, with `count` running trials that have
    not reported yet; their ids."""
    engine = make_engine(database_url)
    sweep_id = uuid.uuid4().hex[:12]
    try:
        with make_sessions(engine)() as session:
            session.add(Sweep(id=sweep_id, name="running", state="running", spec=DIGITS_SPEC))
            session.flush()
            for number in range(count):
                session.add(
                    Trial(
                        id=f"{sweep_id}-{number}",
                        sweep_id=sweep_id,
                        number=number,
                        state="running",
                        hyperparameters={"units": 16},
                        metrics={},
                        attempts=1,
                    )
                )
            session.commit()
    finally:
        engine.dispose()
    return [f"{sweep_id}-{number}" for number in range(count)]
