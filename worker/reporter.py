"""Reports a trial's progress to the controller and passes its answer back to Keras."""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import os
import queue
import threading
import time
from typing import Any, Protocol

import httpx
import keras

log = logging.getLogger(__name__)


class Reporter(Protocol):
    """Anything that takes one step's metrics and answers "continue" or "stop".

    `checkpoint` is the trial's latest resumable checkpoint when one was saved for the step.
    """

    def report(
        self, step: int, metrics: dict[str, float | None], checkpoint: str | None = None
    ) -> str: ...


class HttpReporter:
    """Posts each report to `POST /api/v1/trials/{id}/reports` on the controller.

    A controller that cannot be reached does not fail the trial: the report is retried a few
    times, then dropped with a warning (the final result carries the whole history anyway).

    With `background=True` (a sweep with no early-termination rule, whose answer is always
    "continue") `report` returns at once and the process's sender thread sends the reports in
    order, so training never waits for the controller; `close` sends what is still queued.
    With `every_s` as well, a trial sends at most one message per `every_s` seconds: a report
    due sooner waits until then, and a later report takes its place. The steps it replaced
    reach the controller with the trial's result (or, should the worker die, from its
    checkpoint's record), so epochs shorter than `every_s` cost the controller one request per
    `every_s`, not one per epoch.

    Args:
        base_url: The controller's URL, e.g. "http://127.0.0.1:8000".
        trial_id: The trial being reported.
        token: Bearer token for the report, or None.
        retries: Attempts per report before it is dropped. Default 3.
        background: Send reports from a thread without waiting for the answers. Default False.
        every_s: With `background`, the least time between two messages of the trial.
            Default 0: every report goes.
        keepalive_s: After `started`, a heartbeat goes whenever the trial has sent nothing
            for this long (an epoch longer than the controller's heartbeat timeout is not a
            lost worker), until `close`. Default 60.
    """

    def __init__(
        self,
        base_url: str,
        trial_id: str,
        token: str | None = None,
        retries: int = 3,
        background: bool = False,
        every_s: float = 0.0,
        keepalive_s: float = 60.0,
    ):
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.trial_id = trial_id
        self.retries = retries
        self.background = background
        self._client = _client_for(base_url)
        # Reports not sent yet are dropped once the trial's result carries them (`close`).
        self._dropping = False
        self.every_s = every_s
        self._last_sent = -math.inf  # when the last message was queued to go
        self._held: dict[str, Any] | None = None  # a report waiting for `every_s` to pass
        self._lock = threading.Lock()
        self.keepalive_s = keepalive_s
        self._closed = False
        self._held_start: dict[str, Any] | None = None  # the start message, waiting its turn

    def report(
        self, step: int, metrics: dict[str, float | None], checkpoint: str | None = None
    ) -> str:
        payload: dict[str, Any] = {"step": step, "metrics": metrics}
        if checkpoint:
            payload["checkpoint"] = checkpoint
        if self.background:
            self._put_report(payload)
            return "continue"
        return self._send_report(payload)

    def _put_report(self, payload: dict[str, Any]) -> None:
        with self._lock:
            if self._held is not None:  # one already waits for its turn: this one replaces it
                self._held = payload
                return
            now = time.monotonic()
            due = self._last_sent + self.every_s
            if now >= due:
                self._last_sent = now
                _sender().put((self, "report", payload))
            else:
                self._held = payload
                _sender().put_at(due, (self, "held", None))

    def started(self, node: dict[str, str] | None = None) -> str:
        """Tell the controller the trial has started, and on which `node`; returns its answer
        ("stop" for a trial cancelled meanwhile; "continue" when sent in the background). A
        controller that cannot be reached is not an error: the first report says the trial is
        alive just as well.

        In the background with `every_s`, the message waits its turn like a report: a trial
        that ends within `every_s` sends nothing at all (the launcher told the controller it
        started, and its result names the node)."""
        payload = {"node": node} if node else {}
        now = time.monotonic()
        with self._lock:
            self._last_sent = now
        if self.keepalive_s > 0:
            _sender().put_at(now + self.keepalive_s, (self, "keepalive", None))
        if self.background and self.every_s > 0:
            with self._lock:
                self._held_start = payload
            _sender().put_at(now + self.every_s, (self, "start", None))
            return "continue"
        if self.background:
            _sender().put((self, "heartbeat", payload))
            return "continue"
        return self._send_heartbeat(payload)

    def close(self, timeout_s: float = 60.0, *, send_queued: bool = True) -> None:
        """Send what is still queued, waiting at most `timeout_s`.

        `send_queued=False` returns at once and drops the reports not sent yet (the one being
        sent still goes, and a heartbeat still goes): for a trial whose result is about to
        carry its whole history, which fills in every report that never arrived, so the result
        need not wait for them.
        """
        self._closed = True
        if not self.background:
            return
        if not send_queued:
            self._dropping = True
            return
        with self._lock:
            start, self._held_start = self._held_start, None
            held, self._held = self._held, None
        if start is not None:
            _sender().put((self, "heartbeat", start))
        if held is not None:
            _sender().put((self, "report", held))
        sent = threading.Event()
        _sender().put((self, "flushed", sent))
        if not sent.wait(timeout_s):
            log.warning(
                "reports of trial %s still unsent after %g s; dropping them",
                self.trial_id,
                timeout_s,
            )
            self._dropping = True

    def _send(self, kind: str, payload: Any) -> None:
        """Send one queued item (on the process's sender thread)."""
        if kind == "flushed":
            payload.set()
        elif kind in ("held", "start"):  # a message that waited its turn, if still waiting
            with self._lock:
                if kind == "held":
                    waiting, self._held = self._held, None
                else:
                    waiting, self._held_start = self._held_start, None
                self._last_sent = time.monotonic()
            if waiting is not None and not self._dropping:
                send = self._send_report if kind == "held" else self._send_heartbeat
                send(waiting)
        elif kind == "heartbeat":
            self._send_heartbeat(payload)
        elif kind == "keepalive":
            self._keep_alive()
        elif not self._dropping:
            self._send_report(payload)

    def _keep_alive(self) -> None:
        """Send a heartbeat if the trial has been silent for `keepalive_s`; check again later."""
        if self._closed:
            return
        with self._lock:
            silent_s = time.monotonic() - self._last_sent
        if silent_s >= self.keepalive_s:
            self._send_heartbeat({})
            silent_s = 0.0
        _sender().put_at(time.monotonic() + self.keepalive_s - silent_s, (self, "keepalive", None))

    def _send_report(self, payload: dict[str, Any]) -> str:
        with self._lock:
            self._last_sent = max(self._last_sent, time.monotonic())
        for attempt in range(self.retries):
            try:
                response = self._client.post(
                    f"/api/v1/trials/{self.trial_id}/reports", json=payload, headers=self._headers
                )
                if response.status_code < 500:
                    response.raise_for_status()
                    return response.json().get("action", "continue")
            except httpx.TransportError as exc:
                log.warning("report for trial %s failed (%s); retrying", self.trial_id, exc)
            except httpx.HTTPStatusError as exc:
                # Once the trial's result is on its way, the controller may have recorded it
                # and refuse a report still in flight: expected, and the result holds it.
                (log.debug if self._dropping else log.warning)(
                    "controller refused report for trial %s: %s", self.trial_id, exc
                )
                return "continue"
            if self._dropping:
                return "continue"  # the result carries this report; no retry
            time.sleep(0.2 * (attempt + 1))
        log.warning("dropping report of step %d for trial %s", payload["step"], self.trial_id)
        return "continue"

    def _send_heartbeat(self, payload: dict[str, Any]) -> str:
        with self._lock:
            self._last_sent = max(self._last_sent, time.monotonic())
        try:
            response = self._client.post(
                f"/api/v1/trials/{self.trial_id}/heartbeat", json=payload, headers=self._headers
            )
            if response.status_code < 400:
                return response.json().get("action", "continue")
            log.warning(
                "controller refused the start of trial %s: HTTP %d %s",
                self.trial_id,
                response.status_code,
                response.text[:200],
            )
        except httpx.TransportError as exc:
            log.warning("could not tell the controller trial %s started: %s", self.trial_id, exc)
        return "continue"


class _Sender:
    """The worker process's one thread that sends background reports, of every trial, in order.

    A warm worker process runs trial after trial: one long-lived thread spares each trial a
    thread start and a join on its critical path.
    """

    def __init__(self):
        self.pid = os.getpid()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._later: list[tuple[float, int, tuple[HttpReporter, str, Any]]] = []  # a heap
        self._later_lock = threading.Lock()
        self._order = itertools.count()
        self._thread = threading.Thread(target=self._run, name="ktsweep-reports", daemon=True)
        self._thread.start()

    def put(self, item: tuple[HttpReporter, str, Any]) -> None:
        self._queue.put(item)

    def put_at(self, due: float, item: tuple[HttpReporter, str, Any]) -> None:
        """Send `item` at `time.monotonic()` `due` (after what is queued by then)."""
        with self._later_lock:
            heapq.heappush(self._later, (due, next(self._order), item))
        self._queue.put(None)  # wake the thread to wait for the new due time

    def _next(self) -> tuple[HttpReporter, str, Any]:
        while True:
            with self._later_lock:
                if self._later and self._later[0][0] <= time.monotonic():
                    return heapq.heappop(self._later)[2]
                wait = max(0.0, self._later[0][0] - time.monotonic()) if self._later else None
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                continue
            if item is not None:
                return item

    def _run(self) -> None:
        while True:
            reporter, kind, payload = self._next()
            try:
                reporter._send(kind, payload)
            except Exception:  # never let one report end the thread and strand the rest
                log.exception("sending a %s of trial %s failed", kind, reporter.trial_id)


_SENDER: _Sender | None = None
_SENDER_LOCK = threading.Lock()


def _sender() -> _Sender:
    """This process's sender thread, started on first use (again in a forked child)."""
    global _SENDER
    with _SENDER_LOCK:
        if _SENDER is None or _SENDER.pid != os.getpid():
            _SENDER = _Sender()
        return _SENDER


_CLIENTS: dict[str, httpx.Client] = {}
_CLIENTS_LOCK = threading.Lock()


def _client_for(base_url: str) -> httpx.Client:
    """One HTTP client per controller URL for the whole worker process.

    Making an `httpx.Client` costs about 40 ms (it loads the CA certificates), which a warm
    worker would otherwise pay for every trial; a shared client also keeps its connection.
    """
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(base_url)
        if client is None or client.is_closed:
            client = _CLIENTS[base_url] = httpx.Client(base_url=base_url, timeout=10.0)
        return client


def plain_metrics(logs: dict[str, Any] | None) -> dict[str, float | None]:
    """Keras logs as plain Python floats; NaN and infinity become None (JSON has neither)."""
    metrics: dict[str, float | None] = {}
    for name, value in (logs or {}).items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        metrics[name] = number if math.isfinite(number) else None
    return metrics


class ReportingCallback(keras.callbacks.Callback):
    """Reports every epoch's metrics and stops training when the controller answers "stop".

    Put it after the callbacks that save checkpoints: each report then names the checkpoint of
    the epoch it reports.

    Args:
        reporter: Where reports go, or None to only record the history.
        initial_epoch: Epochs already run before this fit (on a resume). Default 0.
        last_checkpoint: The trial's `LastEpochCheckpoint`, whose latest file each report
            carries, or None.
    """

    def __init__(self, reporter: Reporter | None, initial_epoch: int = 0, last_checkpoint=None):
        super().__init__()
        self.reporter = reporter
        self.initial_epoch = initial_epoch
        self.last_checkpoint = last_checkpoint
        self.history: list[dict[str, Any]] = []
        self.stopped_early = False

    def on_train_begin(self, logs=None):
        self.history = []
        self.stopped_early = False

    def on_epoch_end(self, epoch, logs=None):
        step = epoch + 1
        metrics = plain_metrics(logs)
        self.history.append({"step": step, "metrics": metrics})
        if self.reporter is None:
            return
        epochs = (self.params or {}).get("epochs")
        if getattr(self.reporter, "background", False) and epochs and step >= epochs:
            # The last epoch's report would only arrive with the trial's result, which carries
            # the whole history (and if the worker dies first, its checkpoint's record does).
            return
        checkpoint = None
        if self.last_checkpoint is not None and self.last_checkpoint.epoch == step:
            checkpoint = self.last_checkpoint.path
        if self.reporter.report(step, metrics, checkpoint=checkpoint) == "stop":
            self.stopped_early = True
            self.model.stop_training = True
