"""Reports a trial's progress to the controller and passes its answer back to Keras."""

from __future__ import annotations

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

    Args:
        base_url: The controller's URL, e.g. "http://127.0.0.1:8000".
        trial_id: The trial being reported.
        token: Bearer token for the report, or None.
        retries: Attempts per report before it is dropped. Default 3.
        background: Send reports from a thread without waiting for the answers. Default False.
    """

    def __init__(
        self,
        base_url: str,
        trial_id: str,
        token: str | None = None,
        retries: int = 3,
        background: bool = False,
    ):
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.trial_id = trial_id
        self.retries = retries
        self.background = background
        self._client = _client_for(base_url)
        # Reports not sent yet are dropped once the trial's result carries them (`close`).
        self._dropping = False

    def report(
        self, step: int, metrics: dict[str, float | None], checkpoint: str | None = None
    ) -> str:
        payload: dict[str, Any] = {"step": step, "metrics": metrics}
        if checkpoint:
            payload["checkpoint"] = checkpoint
        if self.background:
            _sender().put((self, "report", payload))
            return "continue"
        return self._send_report(payload)

    def started(self, node: dict[str, str] | None = None) -> str:
        """Tell the controller the trial has started, and on which `node`; returns its answer
        ("stop" for a trial cancelled meanwhile; "continue" when sent in the background). A
        controller that cannot be reached is not an error: the first report says the trial is
        alive just as well."""
        payload = {"node": node} if node else {}
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
        if not self.background:
            return
        if not send_queued:
            self._dropping = True
            return
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
        elif kind == "heartbeat":
            self._send_heartbeat(payload)
        elif not self._dropping:
            self._send_report(payload)

    def _send_report(self, payload: dict[str, Any]) -> str:
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
        self._thread = threading.Thread(target=self._run, name="ktsweep-reports", daemon=True)
        self._thread.start()

    def put(self, item: tuple[HttpReporter, str, Any]) -> None:
        self._queue.put(item)

    def _run(self) -> None:
        while True:
            reporter, kind, payload = self._queue.get()
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
