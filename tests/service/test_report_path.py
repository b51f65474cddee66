"""The report path under concurrency (group commit), and the lean trial reads it is read by."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest
from sqlalchemy import create_engine, select

from ktsweep.service import sweeps as store
from ktsweep.service.db import make_engine
from ktsweep.service.models import Trial, TrialReport
from ktsweep.service.schemas import TrialDetail, TrialOut
from tests.service.helpers import DIGITS_SPEC, controller, store_sweep


@pytest.fixture()
def api(database_url, tmp_path):
    with controller(database_url, tmp_path) as client:
        yield client


def add_trial(api, sweep_id: str, number: int, state: str = "running", **columns) -> str:
    trial_id = f"{sweep_id}-{number}"
    with api.app_state.sessions() as session:
        session.add(
            Trial(
                id=trial_id,
                sweep_id=sweep_id,
                number=number,
                state=state,
                hyperparameters=columns.pop("hyperparameters", {"units": 16}),
                metrics=columns.pop("metrics", {}),
                attempts=1,
                **columns,
            )
        )
        session.commit()
    return trial_id


def test_concurrent_reports_are_each_stored_and_visible_once_answered(api):
    sweep = store_sweep(api)
    trial_ids = [add_trial(api, sweep.id, number) for number in range(4)]

    def report(trial_id: str, step: int):
        body = {"step": step, "metrics": {"val_accuracy": step / 10}}
        answer = api.post(f"/api/v1/trials/{trial_id}/reports", json=body)
        # Acknowledged means committed: the next read sees this step.
        steps = [e["step"] for e in api.get(f"/api/v1/trials/{trial_id}").json()["history"]]
        return answer.status_code, answer.json(), step in steps

    jobs = [(trial_id, step) for trial_id in trial_ids for step in range(1, 11)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda job: report(*job), jobs))
    assert answers == [(200, {"action": "continue"}, True)] * len(jobs)
    for trial_id in trial_ids:
        trial = api.get(f"/api/v1/trials/{trial_id}").json()
        assert [entry["step"] for entry in trial["history"]] == list(range(1, 11))
        assert trial["epochs"] == 10 and trial["metrics"] == {"val_accuracy": 1.0}
        assert trial["objective"] == 1.0 and trial["state"] == "running"


def test_a_batch_answers_each_report_for_itself(database_url, tmp_path):
    with controller(database_url, tmp_path) as api:
        sweep = store_sweep(api, objectives=[0.9])  # trial 0: completed
        running = add_trial(api, sweep.id, 1)
        pending = add_trial(api, sweep.id, 2, state="pending")
        stopped = add_trial(api, sweep.id, 3, state="stopped")
    engine = make_engine(database_url)
    reports = [
        store.ReportIn(running, 2, {"val_accuracy": 0.5}, checkpoint="/ckpt/2"),
        store.ReportIn(f"{sweep.id}-0", 5, {"val_accuracy": 0.1}),
        store.ReportIn("no-such-trial", 1, {}),
        store.ReportIn(running, 1, {"val_accuracy": 0.4}),  # older step: history only
        store.ReportIn(pending, 1, {"val_accuracy": 0.3}),
        store.ReportIn(stopped, 1, {"val_accuracy": 0.2}),
        store.ReportIn(running, 2, {"val_accuracy": 0.6}),  # same step again: replaces it
    ]
    with engine.begin() as connection:
        outcomes = store.record_reports(connection, reports, {})
    assert outcomes[0] == store.ReportRecorded("continue", sweep.id)
    assert isinstance(outcomes[1], store.ConflictError) and "completed" in str(outcomes[1])
    assert isinstance(outcomes[2], store.NotFoundError) and "no-such-trial" in str(outcomes[2])
    assert outcomes[3:] == [
        store.ReportRecorded("continue", sweep.id),
        store.ReportRecorded("continue", sweep.id),
        store.ReportRecorded("stop", sweep.id),
        store.ReportRecorded("continue", sweep.id),
    ]
    with engine.connect() as connection:
        rows = {row.id: row for row in connection.execute(select(Trial.__table__))}
        history = connection.execute(
            select(TrialReport.trial_id, TrialReport.step, TrialReport.metrics).order_by(
                TrialReport.trial_id, TrialReport.step
            )
        ).all()
    engine.dispose()
    assert rows[running].metrics == {"val_accuracy": 0.6} and rows[running].epochs == 2
    assert rows[running].objective == 0.6 and rows[running].checkpoint == "/ckpt/2"
    assert rows[running].heartbeat_at is not None
    assert rows[pending].state == "running" and rows[pending].started_at is not None
    assert rows[f"{sweep.id}-0"].metrics == {"val_accuracy": 0.9}  # completed: unchanged
    assert rows[stopped].metrics == {}
    assert [tuple(row) for row in history] == [
        (running, 1, {"val_accuracy": 0.4}),
        (running, 2, {"val_accuracy": 0.6}),
        (pending, 1, {"val_accuracy": 0.3}),
    ]


def test_report_answers_stop_when_the_early_termination_rule_says_so(api):
    spec = {**DIGITS_SPEC, "early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 2}}
    sweep = store_sweep(api, objectives=[0.9, 0.8])
    with api.app_state.sessions() as session:
        session.get(type(sweep), sweep.id).spec = spec
        for number, value in enumerate([0.9, 0.8]):
            session.add(
                TrialReport(
                    trial_id=f"{sweep.id}-{number}", step=1, metrics={"val_accuracy": value}
                )
            )
        session.commit()
    poor, good = add_trial(api, sweep.id, 2), add_trial(api, sweep.id, 3)
    answer = api.post(
        f"/api/v1/trials/{poor}/reports", json={"step": 1, "metrics": {"val_accuracy": 0.1}}
    )
    assert answer.json() == {"action": "stop"}
    answer = api.post(
        f"/api/v1/trials/{good}/reports", json={"step": 1, "metrics": {"val_accuracy": 0.95}}
    )
    assert answer.json() == {"action": "continue"}
    # Both reports were stored, whatever the answer.
    assert api.get(f"/api/v1/trials/{poor}").json()["metrics"] == {"val_accuracy": 0.1}


def test_trial_reads_give_the_documents_of_the_schemas(api):
    sweep = store_sweep(api)
    started = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc)
    trial_id = add_trial(
        api,
        sweep.id,
        0,
        state="failed",
        hyperparameters={"units": 32, "optimizer": {"name": "adam", "lr": 0.001}, "tag": "λ"},
        metrics={"val_accuracy": 1, "loss": None},
        objective=1.0,
        epochs=3,
        wandb={"url": "https://wandb.ai/x/y/runs/z", "sync": None},
        checkpoint="/ckpt/épocas",
        error="Traceback: ValueError — «bad»",
        started_at=started,
        finished_at=started.replace(microsecond=0),
    )
    with api.app_state.sessions() as session:
        # Stored out of order: the history still comes by step.
        session.add(TrialReport(trial_id=trial_id, step=2, metrics={"val_accuracy": 0.5}))
        session.commit()
        session.add(TrialReport(trial_id=trial_id, step=1, metrics={"val_accuracy": 0, "x": None}))
        session.commit()
        trial = session.get(Trial, trial_id)
        history = store.trial_history(session, trial)
        expected_out = json.loads(TrialOut.model_validate(trial).model_dump_json())
        expected_detail = json.loads(
            TrialDetail(
                **TrialOut.model_validate(trial).model_dump(), history=history
            ).model_dump_json()
        )
    assert api.get(f"/api/v1/trials/{trial_id}").json() == expected_detail
    listed = api.get(f"/api/v1/sweeps/{sweep.id}/trials").json()
    assert listed == {"items": [expected_out], "next_cursor": None}
    assert api.get("/api/v1/trials/nope").status_code == 404
    assert api.get("/api/v1/sweeps/nope/trials").status_code == 404


@pytest.mark.parametrize("goal", ["maximize", "minimize"])
def test_pages_by_metric_follow_ties_and_missing_values_across_cursors(api, goal):
    objectives = [0.5, None, 0.7, 0.5, None, 0.1, 0.7, 0.5, 0.3]
    sweep = store_sweep(api, objectives=objectives, goal=goal)
    with_metric = sorted(
        (o, n) for n, o in enumerate(objectives) if o is not None
    )  # by value, then number
    if goal == "maximize":
        with_metric = sorted(with_metric, key=lambda pair: (-pair[0], pair[1]))
    expected = [n for _, n in with_metric] + [n for n, o in enumerate(objectives) if o is None]
    for limit in (1, 2, 3, 4):
        seen, cursor = [], None
        while True:
            params = {"order": "metric", "limit": limit, **({"cursor": cursor} if cursor else {})}
            page = api.get(f"/api/v1/sweeps/{sweep.id}/trials", params=params).json()
            seen += [trial["number"] for trial in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == expected, limit
    number_cursor = api.get(f"/api/v1/sweeps/{sweep.id}/trials", params={"limit": 1}).json()
    refused = api.get(
        f"/api/v1/sweeps/{sweep.id}/trials",
        params={"order": "metric", "cursor": number_cursor["next_cursor"]},
    )
    assert refused.status_code == 422 and refused.json()["detail"][0]["path"] == "cursor"


def test_json_columns_keep_what_orjson_alone_would_refuse(database_url, tmp_path):
    # Non-string keys (YAML allows them, e.g. class_weight) become strings, as before.
    with controller(database_url, tmp_path) as api:
        sweep = store_sweep(api)
        trial_id = add_trial(api, sweep.id, 0, hyperparameters={"class_weight": {0: 1.0, 1: 2.0}})
        detail = api.get(f"/api/v1/trials/{trial_id}").json()
    assert detail["hyperparameters"] == {"class_weight": {"0": 1.0, "1": 2.0}}


def test_reads_survive_a_database_that_closed_their_connections(tmp_path):
    from tests.service.conftest import POSTGRES_ADMIN_URL

    name = f"ktsweep_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        with controller(url, tmp_path) as api:
            sweep = store_sweep(api, objectives=[0.5])
            with ThreadPoolExecutor(max_workers=8) as pool:  # several connections in the pool
                reads = pool.map(lambda _: api.get(f"/api/v1/trials/{sweep.id}-0"), range(64))
                assert {read.status_code for read in reads} == {200}
            with admin.connect() as connection:  # as a database restart would
                connection.exec_driver_sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
                )
            assert api.get(f"/api/v1/trials/{sweep.id}-0").status_code == 200
            assert api.get(f"/api/v1/sweeps/{sweep.id}/trials").status_code == 200
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


# On PostgreSQL the trial's row lock makes a report wait for the result's recording to end.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_report_stored_while_the_result_is_recorded_neither_fails_it_nor_is_replaced(api):
    """On SQLite the worker's last report may be committed between the moment the result's
    recording reads the stored steps and the moment it fills in the missing ones."""
    from sqlalchemy import event

    sweep = store_sweep(api)
    trial_id = add_trial(api, sweep.id, 0)
    engine = api.app_state.sessions.kw["bind"]
    raced = []

    def report_in_between(connection, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT INTO trial_reports") and not raced:
            raced.append(True)  # a report from another connection, before this insert runs
            body = {"step": 2, "metrics": {"val_accuracy": 0.25}}
            other = ThreadPoolExecutor(max_workers=1)
            answer = other.submit(
                api.post, f"/api/v1/trials/{trial_id}/reports", json=body
            ).result()
            assert answer.status_code == 200

    event.listen(engine, "before_cursor_execute", report_in_between)
    history = [{"step": step, "metrics": {"val_accuracy": step / 10}} for step in (1, 2, 3)]
    result = {"state": "completed", "metrics": history[-1]["metrics"], "history": history}
    try:
        with api.app_state.sessions() as session:
            trial, recorded = store.record_trial_result(session, trial_id, result, "val_accuracy")
    finally:
        event.remove(engine, "before_cursor_execute", report_in_between)
    assert raced
    assert trial.state == "completed"
    assert [entry["step"] for entry in recorded] == [1, 2, 3]
    with api.app_state.sessions() as session:
        stored = dict(
            session.execute(
                select(TrialReport.step, TrialReport.metrics).where(
                    TrialReport.trial_id == trial_id
                )
            ).all()
        )
    assert stored == {1: {"val_accuracy": 0.1}, 2: {"val_accuracy": 0.25}, 3: {"val_accuracy": 0.3}}
