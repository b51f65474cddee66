"""Group commit for worker reports: the reports that arrive together share one transaction.

A report is acknowledged only after the transaction holding it has committed, so an answered
report is durable and visible to the next read. Reports that arrive while a batch commits wait
for the next batch, so under load every commit carries many reports, and a quiet controller
still commits each report at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ktsweep.service import sweeps as store
from ktsweep.service.db import AsyncConnections
from ktsweep.service.sweeps import ReportIn, ReportRecorded

log = logging.getLogger(__name__)


class ReportWriter:
    """Records worker reports in batches, one transaction and one commit per batch.

    `record` is awaited by each request; a writer task takes everything queued, writes it in
    one transaction, and wakes each request with its report's outcome. While one batch is being
    written, other writers may take the next ones (the trials' row locks keep two batches that
    share a trial in order), so a report rarely waits for a whole batch before its own: on a
    busy machine a batch's statement takes about as long whatever its size (round trips and
    waiting for a core), so more batches at once answer reports sooner. When a
    batch fails as a whole (say a deadlock with another transaction), each of its reports is
    retried alone, so one bad report fails only itself.

    Args:
        connections: Where the writes run (`ktsweep.service.db.AsyncConnections`).
        max_batch: Most reports in one transaction. Default 500.
        writers: Batches written at once. Default 4, and 1 on SQLite (one writer at a time).

    Example:

    ```python
    writer = ReportWriter(AsyncConnections(engine))
    recorded = await writer.record(ReportIn("abc-0", step=1, metrics={"loss": 0.3}))
    recorded.action  # "continue" or "stop"
    ```
    """

    def __init__(
        self, connections: AsyncConnections, max_batch: int = 500, writers: int | None = None
    ):
        self.connections = connections
        self.max_batch = max_batch
        if writers is None:
            writers = 1 if connections.engine.dialect.name == "sqlite" else 4
        self.writers = writers
        self._queue: list[tuple[ReportIn, asyncio.Future]] = []
        self._tasks: set[asyncio.Task] = set()
        self._metric_names: dict[str, str | None] = {}

    async def record(self, report: ReportIn) -> ReportRecorded:
        """Store `report`; returns once it is committed. Raises NotFoundError or ConflictError
        as `sweeps.record_report` does."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.append((report, future))
        if len(self._tasks) < self.writers:
            task = loop.create_task(self._write_queued())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def close(self) -> None:
        """Wait for the reports already queued to be written."""
        if self._tasks:
            await asyncio.shield(asyncio.gather(*self._tasks))

    async def _write_queued(self) -> None:
        while self._queue:
            batch = self._queue[: self.max_batch]
            del self._queue[: self.max_batch]
            outcomes = await self._write([report for report, _ in batch])
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue  # the request went away
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    async def _write(self, reports: list[ReportIn]) -> list[ReportRecorded | Exception]:
        try:
            return await self._write_batch(reports)
        except Exception as exc:
            if len(reports) == 1:
                return [exc]
            log.warning("a batch of %d reports failed; writing them one by one", len(reports))
        outcomes: list[ReportRecorded | Exception] = []
        for report in reports:
            try:
                outcomes.extend(await self._write_batch([report]))
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    async def _write_batch(self, reports: list[ReportIn]) -> list[ReportRecorded | Exception]:
        if self.connections.runs_statements_on_the_loop:  # PostgreSQL: the batch is one statement
            return await self.connections.run(store.record_reports_in_one_statement, reports)
        return await self.connections.write(store.record_reports, reports, self._metric_names)


async def record_and_answer(
    writer: ReportWriter,
    report: ReportIn,
    decides_on_reports: dict[str, bool],
    decide: Callable[[ReportIn, ReportRecorded], Awaitable[str]],
    metrics: Any = None,
) -> str:
    """Store `report` and answer the worker: "stop" for a trial that has ended, else
    `await decide(report, recorded)` for the early-termination answer, skipped ("continue") for a
    sweep that `decides_on_reports` knows has no rule."""
    recorded = await writer.record(report)
    if metrics is not None:
        metrics.reports.inc()
    if recorded.action != "continue" or decides_on_reports.get(recorded.sweep_id) is False:
        return recorded.action
    return await decide(report, recorded)
