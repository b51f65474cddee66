"""One active scheduler among several, and how the API's processes wake it.

Several `ktsweep scheduler` processes may run against the same PostgreSQL database; one of them
schedules, the others stand by. The active one holds a PostgreSQL advisory lock on a connection
of its own (`SchedulerLease`): the lock lasts exactly as long as that connection, so when the
process dies (killed, its machine gone) PostgreSQL drops the lock and a standby, which tries to
take it every `KTSWEEP_TAKEOVER_POLL_S` seconds, becomes the active scheduler. It recovers as a
restarted controller does: completed trials are kept, running ones resume from their checkpoints.

The API's processes share nothing with the scheduler but the database. A write (a new sweep,
pause, resume, cancel) changes the database, then sends a `NOTIFY` on the channel the active
scheduler listens to (`wake_scheduler`); the scheduler, woken, compares the sweeps' states with
those it last saw and acts on what changed (`SweepWatcher`). It also looks every
`KTSWEEP_SCHEDULER_POLL_S` seconds, so a wake-up that was lost (sent while no scheduler was
listening) delays a change, never loses it.

The active scheduler's identity (host, pid, since when) is stored in the database, where any
API process reads it for `GET /readyz` (`active_scheduler`), and is believed only while its
connection still holds the lock.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import Engine, or_, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from ktsweep.service.db import normalize_url
from ktsweep.service.models import ControllerSetting, Sweep, SweepState

log = logging.getLogger(__name__)

CHANNEL = "ktsweep_scheduler"
# The advisory lock the active scheduler holds (one per database): "ktsweep" in ASCII.
LOCK_KEY = 0x6B_74_73_77_65_65_70
IDENTITY_KEY = "active_scheduler"
# Held while a process brings the schema up to date and makes the trial-token secret.
PREPARE_LOCK_KEY = LOCK_KEY + 1


class LeaseLostError(RuntimeError):
    """The active scheduler's connection to the database broke: another may be active now."""


def is_shared_database(database_url: str) -> bool:
    """Whether several processes may schedule and serve against this database (PostgreSQL)."""
    return make_url(normalize_url(database_url)).get_backend_name() == "postgresql"


def require_shared_database(database_url: str, what: str) -> None:
    """Raise ValueError, saying why, unless `database_url` is PostgreSQL."""
    if not is_shared_database(database_url):
        raise ValueError(
            f"{what} needs a database that several processes share: set KTSWEEP_DATABASE_URL "
            "to a PostgreSQL URL (postgresql://user@host/db). With SQLite run `ktsweep serve`, "
            "which serves the API and schedules in one process."
        )


@contextmanager
def prepared_database(engine: Engine) -> Iterator[None]:
    """Run the block (migrations, making the secret) in one process at a time: API processes
    and schedulers that start together on one PostgreSQL database take turns. A no-op on
    SQLite, which one process serves."""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": PREPARE_LOCK_KEY})
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": PREPARE_LOCK_KEY})
            connection.commit()


def wake_scheduler(session: Session, sweep_id: str, change: str) -> None:
    """Tell the active scheduler that `sweep_id` changed (`change`: submitted, pause, resume,
    cancel); committed here. Nothing to do on SQLite, where the API's process schedules."""
    if session.get_bind().dialect.name != "postgresql":
        return
    payload = json.dumps({"sweep": sweep_id, "change": change})
    session.execute(
        text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": payload}
    )
    session.commit()


def active_scheduler(session: Session) -> dict[str, Any] | None:
    """The active scheduler (`host`, `pid`, `since`), or None when no scheduler holds the lock.

    On SQLite there is no lease: None."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    row = session.get(ControllerSetting, IDENTITY_KEY)
    if row is None:
        return None
    identity = json.loads(row.value)
    holds = session.execute(
        text(f"SELECT 1 FROM pg_locks WHERE pid = :pid AND {_HOLDS_THE_LOCK}"),
        {
            "pid": identity.pop("backend_pid", -1),
            "high": LOCK_KEY >> 32,
            "low": LOCK_KEY & 0xFFFFFFFF,
        },
    ).first()
    return identity if holds is not None else None


# Where pg_locks shows the scheduler lock held, in this database.
_HOLDS_THE_LOCK = (
    "locktype = 'advisory' AND granted "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND classid = :high AND objid = :low AND objsubid = 1"
)


def describe(identity: dict[str, Any] | None) -> str:
    """The active scheduler in words, for logs and messages."""
    if identity is None:
        return "none"
    return f"pid {identity['pid']} on {identity['host']} (active since {identity['since']})"


def _conninfo(database_url: str) -> str:
    url = make_url(normalize_url(database_url)).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class SchedulerLease:
    """The advisory lock that makes one scheduler the active one, on a connection of its own,
    which also receives the wake-ups (`LISTEN`).

    Args:
        database_url: The (PostgreSQL) database.
        keepalive_s: Seconds of silence after which PostgreSQL probes this connection, and
            closes it (dropping the lock) when three probes a second apart go unanswered: a
            scheduler whose machine vanished loses the lease within about `keepalive_s + 3`
            seconds. A killed process loses it at once (its socket closes). Default 5.
    """

    def __init__(self, database_url: str, keepalive_s: float = 5.0):
        self.database_url = database_url
        self.keepalive_s = keepalive_s
        self.identity: dict[str, Any] | None = None
        self.backend_pid: int | None = None  # the server process of the last connection held
        self._connection: psycopg.Connection | None = None

    @property
    def held(self) -> bool:
        return self.identity is not None

    def try_acquire(self) -> bool:
        """Take the lock if no other scheduler holds it; on success, listen for wake-ups and
        record this process as the active scheduler. Raises psycopg.OperationalError when the
        database cannot be reached."""
        if self.held:
            return True
        try:
            return self._try_acquire()
        except psycopg.Error:
            self.drop()  # a fresh connection next time
            raise

    def _try_acquire(self) -> bool:
        if self._connection is None or self._connection.closed:
            self._connection = psycopg.connect(
                _conninfo(self.database_url), autocommit=True, connect_timeout=10
            )
            idle = max(1, round(self.keepalive_s))
            for setting, value in (
                ("tcp_keepalives_idle", idle),
                ("tcp_keepalives_interval", 1),
                ("tcp_keepalives_count", 3),
            ):
                self._connection.execute(f"SET {setting} = {int(value)}")
        taken = self._connection.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
        if not taken or not taken[0]:
            return False
        self._connection.execute(f"LISTEN {CHANNEL}")
        backend_pid = self.backend_pid = self._connection.info.backend_pid
        self.identity = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        self._connection.execute(
            "INSERT INTO controller_settings (key, value) VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            (IDENTITY_KEY, json.dumps({**self.identity, "backend_pid": backend_pid})),
        )
        return True

    def holder(self) -> int | None:
        """The server process (backend pid) holding the lock now, or None."""
        if self._connection is None or self._connection.closed:
            return None
        row = self._connection.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND classid = %s AND objid = %s AND objsubid = 1",
            (LOCK_KEY >> 32, LOCK_KEY & 0xFFFFFFFF),
        ).fetchone()
        return row[0] if row else None

    def wait(self, timeout_s: float) -> list[str]:
        """Wait up to `timeout_s` for wake-ups; their payloads (empty: none came). Raises
        LeaseLostError when the connection holding the lock broke."""
        if self._connection is None or not self.held:
            raise LeaseLostError("this process does not hold the scheduler lease")
        try:
            payloads = [
                n.payload for n in self._connection.notifies(timeout=timeout_s, stop_after=1)
            ]
            if payloads:  # the rest of a burst, without waiting
                payloads += [n.payload for n in self._connection.notifies(timeout=0)]
            else:
                self._connection.execute("SELECT 1")  # still connected, so still holding the lock
        except psycopg.Error as exc:
            raise LeaseLostError(
                f"the connection holding the scheduler lease broke: {exc}"
            ) from exc
        return payloads

    def drop(self) -> None:
        """Forget a connection that broke (the lock went with it)."""
        connection, self._connection = self._connection, None
        self.identity = None
        if connection is not None:
            with suppress(psycopg.Error):
                connection.close()

    def release(self) -> None:
        """Give the lock up (closing the connection drops it) and forget the identity."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            if self.held:
                connection.execute(
                    "DELETE FROM controller_settings WHERE key = %s AND value LIKE %s",
                    (IDENTITY_KEY, f'%"backend_pid": {connection.info.backend_pid}}}'),
                )
        except psycopg.Error:
            pass  # the connection is gone, and the lock with it
        finally:
            self.identity = None
            connection.close()


class SweepWatcher:
    """What the active scheduler does about sweeps that the API's processes changed.

    Each `reconcile` reads the states of the sweeps that are running or paused (and of those it
    saw so last time) and acts on each change, through the scheduler's public methods:

    - a new running sweep, or one resumed: the scheduler is woken and fills its slots;
    - a paused sweep: its trials waiting in lanes to start are taken back (they start after
      `resume`); running trials finish;
    - a cancelled sweep: the trials the cancel marked `cancelled` are stopped on the cluster.

    Args:
        scheduler: The active scheduler (`ktsweep.service.scheduler.Scheduler`).
        sessions: Database session factory.
    """

    # How far back a cancel is looked for: a sweep cancelled and seen by no pass (say submitted
    # and cancelled between two) still gets its trials stopped.
    CANCEL_WINDOW = timedelta(minutes=5)

    def __init__(self, scheduler: Any, sessions: sessionmaker):
        self.scheduler = scheduler
        self.sessions = sessions
        self._states: dict[str, str] = {}
        self._cancels_handled: dict[str, datetime] = {}
        self._started_at = datetime.now(UTC)
        self.passes = 0

    def prime(self) -> None:
        """Learn the states as they are (the scheduler just recovered from them)."""
        with self.sessions() as session:
            self._states = dict(
                session.execute(
                    select(Sweep.id, Sweep.state).where(
                        Sweep.state.in_([SweepState.RUNNING.value, SweepState.PAUSED.value])
                    )
                ).all()
            )

    def reconcile(self) -> None:
        """One pass: act on every sweep whose state changed since the last pass."""
        self.passes += 1
        since = max(self._started_at, datetime.now(UTC) - self.CANCEL_WINDOW)
        with self.sessions() as session:
            rows = session.execute(
                select(Sweep.id, Sweep.state, Sweep.finished_at).where(
                    or_(
                        Sweep.state.in_([SweepState.RUNNING.value, SweepState.PAUSED.value]),
                        Sweep.id.in_(list(self._states)),
                        (Sweep.state == SweepState.CANCELLED.value) & (Sweep.finished_at >= since),
                    )
                )
            ).all()
            states: dict[str, str] = {}
            for sweep_id, state, finished_at in rows:
                before = self._states.get(sweep_id)
                if state in (SweepState.RUNNING.value, SweepState.PAUSED.value):
                    states[sweep_id] = state
                if state == before:
                    continue
                if state == SweepState.RUNNING.value:
                    if before is None:
                        self.scheduler.sweep_submitted(sweep_id)
                    else:
                        self.scheduler.notify()
                elif state == SweepState.PAUSED.value:
                    self._paused(sweep_id)
                elif state == SweepState.CANCELLED.value:
                    if sweep_id not in self._cancels_handled:
                        self._cancelled(session, sweep_id, finished_at)
                        self._cancels_handled[sweep_id] = finished_at
                else:  # finished or failed: the scheduler itself ended it
                    self.scheduler.notify()
        self._states = states
        for sweep_id, at in list(self._cancels_handled.items()):
            if at is None or at < since:
                del self._cancels_handled[sweep_id]

    def _paused(self, sweep_id: str) -> None:
        log.info("sweep %s was paused", sweep_id, extra={"sweep_id": sweep_id})
        self.scheduler.withdraw_waiting_trials(sweep_id)

    def _cancelled(self, session: Session, sweep_id: str, finished_at: datetime | None) -> None:
        log.info(
            "sweep %s was cancelled; stopping its trials", sweep_id, extra={"sweep_id": sweep_id}
        )
        self.scheduler.sweep_cancelled(session, sweep_id, finished_at)
        self.scheduler.notify()


class ActiveTerm:
    """The active scheduler's watch, on a thread: wait for wake-ups on the lease's connection
    (or `poll_s` at most), then reconcile. If the lease's connection breaks, the lock is taken
    again; `on_lost` is called if another scheduler took it first.

    Args:
        lease: The lease this process holds.
        watcher: What acts on changed sweeps.
        poll_s: The most seconds between two reconciliations without a wake-up.
        on_lost: Called (once, from the thread) with the LeaseLostError when another scheduler
            holds the lease: this one must stop scheduling.
    """

    def __init__(
        self,
        lease: SchedulerLease,
        watcher: SweepWatcher,
        poll_s: float,
        on_lost: Callable[[LeaseLostError], None],
    ):
        self.lease = lease
        self.watcher = watcher
        self.poll_s = poll_s
        self.on_lost = on_lost
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.watcher.prime()
        self._thread = threading.Thread(target=self._run, name="ktsweep-wakeups", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stopping.is_set():
            try:
                # Short waits, so a stop is noticed soon.
                woken = self.lease.wait(min(1.0, self.poll_s))
            except LeaseLostError as exc:
                if self._stopping.is_set():
                    return
                if not self._take_again(exc):
                    return
                woken = ["taken again"]  # wake-ups may have been missed meanwhile
            if not woken and time.monotonic() - last < self.poll_s:
                continue
            last = time.monotonic()
            try:
                self.watcher.reconcile()
            except Exception:
                log.exception("reconciling the sweeps' states failed; trying again soon")

    def _take_again(self, exc: LeaseLostError) -> bool:
        """The lease's connection broke (the database restarted, or dropped it): take the lock
        again, unless another scheduler took it meanwhile (then `on_lost`, and False). While the
        database cannot be reached no other scheduler can take the lock either: keep trying;
        while the old connection's server process has not yet exited, it still holds the lock."""
        log.warning("%s; taking the lease again", exc)
        old_backend = self.lease.backend_pid
        self.lease.drop()
        while not self._stopping.is_set():
            try:
                if self.lease.try_acquire():
                    log.info("the scheduler lease is held again")
                    return True
                holder = self.lease.holder()
            except psycopg.Error as error:
                log.warning("cannot reach the database to take the lease again: %s", error)
                self.lease.drop()
                self._stopping.wait(1.0)
                continue
            if holder is None or holder == old_backend:
                self._stopping.wait(0.2)  # released meanwhile, or still being released
                continue
            if self._stopping.is_set():
                break
            log.error("another scheduler took the lease; this one stops")
            self.on_lost(exc)
            return False
        return False
