"""Item 10: a controller killed with SIGKILL leaves none of its local Ray's processes behind
(its agents and busy workers used to run on with no parent)."""

from __future__ import annotations

import contextlib
import signal

import httpx

from ktsweep.worker.ray_watchdog import descendants, start_time
from tests.e2e.conftest import ServerProcess
from tests.security.conftest import VALID_SPEC
from tests.waiting import wait_for


def test_a_killed_controller_leaves_no_ray_process_behind(tmp_path):
    server = ServerProcess(tmp_path, KTSWEEP_API_TOKENS="orphans-token").start()
    try:
        with httpx.Client(base_url=server.url, headers=server.auth, timeout=60) as api:
            sweep = api.post("/api/v1/sweeps", json=VALID_SPEC).json()
            # A worker busy with a trial, as well as the agents.
            trials = f"/api/v1/sweeps/{sweep['id']}/trials"
            assert wait_for(
                lambda: [t["state"] for t in api.get(trials).json()["items"]] == ["running"],
                timeout_s=120,
            )
        under_server = {pid: start_time(pid) for pid in descendants(server.process.pid)}
        names = {_name(pid) for pid in under_server}
        assert any("raylet" in name for name in names), names
        assert any("Agent" in name for name in names), names
    finally:
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=30)

    def left_running() -> dict[int, str]:
        return {pid: _name(pid) for pid, start in under_server.items() if start_time(pid) == start}

    with contextlib.suppress(AssertionError):
        wait_for(lambda: not left_running(), timeout_s=60)
    assert left_running() == {}  # names what is left


def _name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode(errors="replace")[:120]
    except OSError:
        return "?"
