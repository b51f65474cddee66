"""Helpers shared by the callbacks to find the active W&B run."""

from __future__ import annotations

from typing import Any

import wandb


def require_run(callback_name: str) -> Any:
    """Returns the active W&B run, or raises an error that says how to start one."""
    run = wandb.run
    if run is None:
        raise wandb.Error(
            f"`{callback_name}` logs to a W&B run, but there is no active run. "
            f"Call `wandb.init()` before creating `{callback_name}` (pass "
            "`mode='offline'` to log without a network connection, or "
            "`mode='disabled'` to turn logging off)."
        )
    return run
