"""Polling for a condition in tests that watch real processes (a controller, Ray workers)."""

from __future__ import annotations

import time


def wait_for(condition, timeout_s: float = 120, every_s: float = 0.05):
    """Call `condition` until it returns something truthy, and return that; fail after
    `timeout_s` seconds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"condition not met within {timeout_s:g} s")
