"""Ends the processes of a local Ray once the process that started it is gone, however it went.

A local Ray (`ray.init(address="local")`) runs a GCS server and a raylet, which die with the
process that started them, and agents and workers under the raylet, which do not: killed with
SIGKILL, a controller leaves its dashboard and runtime-env agents (and any worker busy with a
trial) running with no parent, for minutes or for good. So when ktsweep starts a local Ray it
also starts this watchdog, in a session of its own: it keeps a list of the owner's descendants
while the owner lives, and the moment the owner is gone it stops those still running (SIGTERM,
then SIGKILL after `grace_s`).

Linux only (it reads `/proc`); elsewhere `start_watchdog` does nothing.

Run by hand: `python -m ktsweep.worker.ray_watchdog <owner pid>`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ktsweep.worker.environment import without_secrets

PROC = Path("/proc")
POLL_S = 1.0  # how often the owner's descendants are listed, and its life checked


def start_watchdog(owner_pid: int | None = None) -> subprocess.Popen | None:
    """Start the watchdog of `owner_pid` (default this process); None where there is no
    `/proc` to read."""
    if not (PROC / "self" / "stat").exists():
        return None
    owner_pid = os.getpid() if owner_pid is None else owner_pid
    return subprocess.Popen(
        [sys.executable, "-m", "ktsweep.worker.ray_watchdog", str(owner_pid)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # not in the owner's process group: a Ctrl-C there spares it
        env=without_secrets(),
    )


def watch(owner_pid: int, poll_s: float = POLL_S, grace_s: float = 3.0) -> list[int]:
    """Wait for `owner_pid` to end, then stop every descendant it had that still runs; returns
    the pids stopped."""
    owner_start = start_time(owner_pid)
    seen: dict[int, int] = {}  # pid -> start time, so a reused pid is never taken for one
    while owner_start is not None and start_time(owner_pid) == owner_start:
        for pid in descendants(owner_pid):
            start = start_time(pid)
            if start is not None:
                seen.setdefault(pid, start)
        time.sleep(poll_s)
    # The owner is gone: its descendants now have other parents. Those seen, and anything
    # they started since, are stopped.
    for pid in list(seen):
        for child in descendants(pid):
            start = start_time(child)
            if start is not None:
                seen.setdefault(child, start)
    seen.pop(os.getpid(), None)  # the watchdog is one of the owner's children too
    alive = [pid for pid, start in seen.items() if start_time(pid) == start]
    _signal(alive, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(start_time(p) == seen[p] for p in alive):
        time.sleep(0.1)
    _signal([pid for pid in alive if start_time(pid) == seen[pid]], signal.SIGKILL)
    return alive


def _signal(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces)."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return text.rpartition(")")[2].split()


def start_time(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot), or None if it is gone or a zombie."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _children(pid: int) -> list[int]:
    """The direct children of `pid`."""
    found: list[int] = []
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return found
    for task in tasks:
        try:
            found.extend(int(child) for child in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


def descendants(pid: int) -> list[int]:
    """Every process under `pid`: its children, theirs, and so on."""
    found: list[int] = []
    todo = _children(pid)
    while todo:
        child = todo.pop()
        if child in found:
            continue
        found.append(child)
        todo.extend(_children(child))
    return found


if __name__ == "__main__":
    watch(int(sys.argv[1]))
