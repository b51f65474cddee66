"""Item 10 of the trust boundary: with `ktsweep serve --processes 2`, an API process that dies
(here killed, as the kernel's out-of-memory killer would) is started again, so one crash does
not halve the API for good."""

from __future__ import annotations

import os
import signal
import time

import httpx

from tests.e2e.conftest import ServerProcess


def follower_pid(server: ServerProcess, deadline_s: float = 120) -> int:
    """The pid of the follower, found by asking on fresh connections until one answers."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(f"{server.url}/healthz", timeout=5).json()
        except httpx.TransportError:
            answer = {}
        if answer.get("role") == "follower":
            return answer["pid"]
        time.sleep(0.2)
    raise AssertionError("no follower answered")


def test_a_killed_follower_is_started_again(tmp_path):
    server = ServerProcess(tmp_path, KTSWEEP_API_PROCESSES="2").start()
    try:
        first = follower_pid(server)
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 120
        second = first
        while second == first and time.monotonic() < deadline:
            second = follower_pid(server)
        assert second != first
        assert "API process 1" in server.log() and "starting it again" in server.log()
    finally:
        server.stop()
