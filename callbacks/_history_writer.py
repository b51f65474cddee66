"""Logs history rows to a W&B run from a background thread, in order."""

from __future__ import annotations

import queue
import threading
from typing import Any

import wandb

_STOP = object()


class HistoryWriter:
    """Queues rows for `run.log` so the training loop never waits on W&B.

    A row may hold callables as values; they are evaluated on the writer's
    thread just before logging (used for learning-rate schedules, which are pure
    functions of the step and cost a backend op to evaluate).
    """

    def __init__(self, run: Any) -> None:
        self._run = run
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(
            target=self._drain, name="wandb-metrics-logger", daemon=True
        )
        self._thread.start()

    def log(self, row: dict[str, Any]) -> None:
        self._queue.put(row)

    def close(self) -> None:
        """Logs every queued row, then stops the thread."""
        self._queue.put(_STOP)
        self._thread.join()
        if self._failure is not None:
            wandb.termwarn(f"Some metrics could not be logged to W&B: {self._failure!r}")

    def _drain(self) -> None:
        while True:
            row = self._queue.get()
            if row is _STOP:
                return
            if self._failure is not None:
                continue
            try:
                self._run.log(_resolved(row))
            except Exception as error:  # keep training going; report once at close
                self._failure = error


def _resolved(row: dict[str, Any]) -> dict[str, Any]:
    resolved = {}
    for key, value in row.items():
        if callable(value):
            value = value()
            if value is None:
                continue
        resolved[key] = value
    return resolved
