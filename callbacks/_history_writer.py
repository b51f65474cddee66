"""Logs history rows to a W&B run in batches, from the training thread, in order."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import wandb

from ktsweep.callbacks.compat.wandb import BatchPublisher, Unsupported

# Rows are handed to W&B once this many are waiting or the first has waited this long.
BATCH_ROWS = 1024
BATCH_SECONDS = 1.0


class HistoryWriter:
    """Collects history rows and hands them to W&B's service in batches.

    `run.log` hands each row to W&B's I/O thread and waits for it: two thread
    switches and a socket write per row, which is most of what per-batch logging
    costs. The writer keeps the rows and publishes those gathered within
    `BATCH_SECONDS` (at most `BATCH_ROWS`) with a single hand-off, each still its
    own history row with the same keys, values and order as `run.log` gives.
    Publishing happens on the caller's thread, between batches: a background
    thread would take Python's lock from the training loop once per row.
    Where the run's internals are not what this expects, it falls back to
    `run.log`.

    A row may hold callables as values; they are called just before publishing.
    `resolve`, if given, is called with each batch of rows first, to fill in
    values that are cheaper to compute for many rows at once.
    """

    def __init__(
        self,
        run: Any,
        *,
        resolve: Callable[[list[dict[str, Any]]], None] | None = None,
        seconds: float | None = None,
        max_rows: int | None = None,
    ) -> None:
        self._run = run
        self._publisher = BatchPublisher.for_run(run)
        self._resolve = resolve
        self._seconds = BATCH_SECONDS if seconds is None else seconds
        self._max_rows = BATCH_ROWS if max_rows is None else max_rows
        self._rows: list[dict[str, Any]] = []
        self._due = time.monotonic() + self._seconds
        self._failure: BaseException | None = None

    def log(self, row: dict[str, Any]) -> None:
        """Queues a row; publishes the queue when it is full or due."""
        self._rows.append(row)
        if len(self._rows) >= self._max_rows or time.monotonic() >= self._due:
            self.flush()

    def flush(self) -> None:
        """Publishes every queued row now."""
        rows, self._rows = self._rows, []
        self._due = time.monotonic() + self._seconds
        if not rows or self._failure is not None:
            return
        try:
            if self._resolve is not None:
                self._resolve(rows)
            self._log([_resolved(row) for row in rows])
        except Exception as error:  # keep training going; report once at close
            self._failure = error

    def close(self) -> None:
        """Publishes every queued row and reports a failure to log, if there was one."""
        self.flush()
        if self._failure is not None:
            wandb.termwarn(f"Some metrics could not be logged to W&B: {self._failure!r}")
            self._failure = None

    def _log(self, rows: list[dict[str, Any]]) -> None:
        if self._publisher is not None:
            try:
                self._publisher.publish(rows)
                return
            except Unsupported:
                self._publisher = None
        for row in rows:
            self._run.log(row)


def _resolved(row: dict[str, Any]) -> dict[str, Any]:
    resolved = {}
    for key, value in row.items():
        if callable(value):
            value = value()
            if value is None:
                continue
        resolved[key] = value
    return resolved
