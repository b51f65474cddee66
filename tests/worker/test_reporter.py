"""HttpReporter against a real controller over HTTP: reports in the background for sweeps with
no early-termination rule (training never waits for them), and waiting for answers otherwise."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from contextlib import contextmanager

import uvicorn

from ktsweep.service.app import create_app
from ktsweep.service.config import Settings
from ktsweep.service.models import Sweep
from ktsweep.worker.ray_runner import ensure_ray
from ktsweep.worker.reporter import HttpReporter
from tests.service.helpers import DIGITS_SPEC, store_sweep
from tests.waiting import wait_for


@contextmanager
def served_controller(tmp_path):
    """The controller app under uvicorn on a free local port (in a thread)."""
    ensure_ray()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'db'}", artifact_dir=tmp_path / "artifacts"
    )
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert wait_for(lambda: server.started, timeout_s=60)
    try:
        yield app, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


class _StateHolder:
    def __init__(self, app):
        self.app_state = app.state


class _HeldReports:
    """Holds every report the controller receives until `gate` is set, then passes it on.

    `entered` is set once a report is being held; `seen` lists the steps passed on, in order.
    """

    def __init__(self, scheduler) -> None:
        self.entered, self.gate = threading.Event(), threading.Event()
        self.seen: list[int] = []
        handle_report = scheduler.handle_report

        async def held_report(writer, report):
            self.entered.set()
            await asyncio.to_thread(self.gate.wait)
            self.seen.append(report.step)
            return await handle_report(writer, report)

        scheduler.handle_report = held_report


def _stored_running_sweep(app):
    """A sweep stored with one running trial, its report rule learnt as a controller does at
    start (building the search method takes seconds: left to the first report, that report
    could outlast the worker's request timeout and be sent twice)."""
    sweep = store_sweep(_StateHolder(app), objectives=[None], trial_state="running")
    app.state.scheduler.learn_report_rules()
    return sweep


def test_background_reports_never_wait_and_arrive_in_order(tmp_path):
    with served_controller(tmp_path) as (app, url):
        sweep = _stored_running_sweep(app)
        trial_id = f"{sweep.id}-0"
        held = _HeldReports(app.state.scheduler)
        gate, seen = held.gate, held.seen
        reporter = HttpReporter(url, trial_id, background=True)
        reporter.started({"hostname": "worker-a"})
        answers = [reporter.report(step, {"val_accuracy": step / 10}) for step in range(1, 11)]
        # Every call came back while the controller had answered none of them.
        assert answers == ["continue"] * 10
        assert seen == []
        gate.set()
        reporter.close()

        assert seen == list(range(1, 11))
        with app.state.sessions() as session:
            trial = session.get(Sweep, sweep.id).trials[0]
            assert [report.step for report in trial.reports] == list(range(1, 11))
            assert trial.reports[-1].metrics == {"val_accuracy": 1.0}
            assert trial.node == {"hostname": "worker-a"}


def test_closing_without_sending_queued_drops_only_reports_not_yet_sent(tmp_path):
    with served_controller(tmp_path) as (app, url):
        sweep = _stored_running_sweep(app)
        trial_id = f"{sweep.id}-0"
        held = _HeldReports(app.state.scheduler)
        entered, gate, seen = held.entered, held.gate, held.seen
        reporter = HttpReporter(url, trial_id, background=True)
        for step in range(1, 6):
            reporter.report(step, {"val_accuracy": step / 10})
        assert entered.wait(30)  # step 1 is on its way; steps 2-5 wait in the queue
        try:
            # Closing does not wait for the report being sent, nor for those queued.
            closing = threading.Thread(target=reporter.close, kwargs={"send_queued": False})
            closing.start()
            closing.join(30)
            assert not closing.is_alive()
        finally:
            gate.set()
        # The process's one sender thread sends in order: once a later reporter's reports are
        # through, the dropped ones would have been too.
        later = HttpReporter(url, trial_id, background=True)
        later.report(9, {"val_accuracy": 0.9})
        later.close()

        assert seen == [1, 9]
        with app.state.sessions() as session:
            trial = session.get(Sweep, sweep.id).trials[0]
            assert [report.step for report in trial.reports] == [1, 9]


def test_waiting_reporter_returns_the_controllers_answer(tmp_path):
    with served_controller(tmp_path) as (app, url):
        sweep = store_sweep(_StateHolder(app), objectives=[None], trial_state="cancelled")
        reporter = HttpReporter(url, f"{sweep.id}-0")
        # A cancelled trial is told to stop, right in the answer to its report.
        assert reporter.report(1, {"val_accuracy": 0.5}) == "stop"
        reporter.close()


def test_workers_wait_for_answers_only_where_a_rule_can_stop_them(tmp_path):
    with served_controller(tmp_path) as (app, _url):
        scheduler = app.state.scheduler
        plain = store_sweep(_StateHolder(app), objectives=[None], trial_state="running")
        with app.state.sessions() as session:
            ruled = Sweep(
                id="ruled",
                name="ruled",
                state="paused",
                spec={**DIGITS_SPEC, "early_terminate": {"type": "hyperband", "min_iter": 1}},
            )
            session.add(ruled)
            session.commit()
            assert scheduler._reports_need_answers(session.get(Sweep, plain.id)) is False
            assert scheduler._reports_need_answers(ruled) is True


def _fit_with_reports(reporter, epochs: int):
    """A real Keras fit on a slice of sklearn's digits with a `ReportingCallback`."""
    import keras
    from sklearn.datasets import load_digits

    from ktsweep.worker.reporter import ReportingCallback

    x, y = load_digits(return_X_y=True)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    reporting = ReportingCallback(reporter)
    model.fit(x[:200] / 16.0, y[:200], epochs=epochs, verbose=0, callbacks=[reporting])
    return reporting


def test_background_reporting_leaves_the_last_epoch_to_the_result(tmp_path):
    with served_controller(tmp_path) as (app, url):
        holder = _StateHolder(app)
        background_trial = f"{store_sweep(holder, objectives=[None], trial_state='running').id}-0"
        waiting_trial = f"{store_sweep(holder, objectives=[None], trial_state='running').id}-0"

        reporter = HttpReporter(url, background_trial, background=True)
        reporting = _fit_with_reports(reporter, epochs=3)
        reporter.close()
        waiting = HttpReporter(url, waiting_trial)
        _fit_with_reports(waiting, epochs=3)
        waiting.close()

        # Every epoch is in the history the trial's result carries ...
        assert [entry["step"] for entry in reporting.history] == [1, 2, 3]
        with app.state.sessions() as session:
            from ktsweep.service.models import Trial

            sent = [report.step for report in session.get(Trial, background_trial).reports]
            answered = [report.step for report in session.get(Trial, waiting_trial).reports]
        # ... but a background reporter does not send the last one, which would only arrive
        # beside the result; a reporter that waits for answers sends every epoch.
        assert sent == [1, 2]
        assert answered == [1, 2, 3]


def test_a_trial_silent_for_a_long_epoch_still_says_it_is_alive_until_it_closes(tmp_path):
    with served_controller(tmp_path) as (app, url):
        sweep = store_sweep(_StateHolder(app), objectives=[None], trial_state="running")
        trial_id = f"{sweep.id}-0"

        def heartbeat_at():
            with app.state.sessions() as session:
                return session.get(Sweep, sweep.id).trials[0].heartbeat_at

        reporter = HttpReporter(url, trial_id, background=True, keepalive_s=0.3)
        reporter.started({"hostname": "worker-a"})
        first = wait_for(heartbeat_at)
        # No report at all (one long epoch): heartbeats keep coming.
        later = wait_for(lambda: (seen := heartbeat_at()) > first and seen)
        wait_for(lambda: heartbeat_at() > later)
        reporter.close()
        time.sleep(0.3)  # a keepalive already on its way may still land
        last = heartbeat_at()
        time.sleep(1.0)
        assert heartbeat_at() == last  # none after the trial closed
