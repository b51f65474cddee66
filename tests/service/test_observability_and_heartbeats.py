"""Prometheus metrics, structured logs, and trials declared lost when their worker goes silent."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone

from ktsweep.service.observability import JsonFormatter
from tests.service.helpers import DIGITS_SPEC, controller, store_sweep
from tests.waiting import wait_for


def long_ago() -> datetime:
    return datetime.now(timezone.utc) - timedelta(hours=1)


def test_silent_trial_without_retries_is_declared_lost_and_failed(tmp_path):
    with controller(f"sqlite:///{tmp_path / 'db'}", tmp_path, heartbeat_timeout_s=2) as api:
        sweep = store_sweep(
            api,
            state="running",
            objectives=[None],
            trial_state="running",
            run_cap=1,
            started_at=long_ago(),
        )
        trial = wait_for(
            lambda: (t := api.get(f"/api/v1/trials/{sweep.id}-0").json())["state"] == "failed" and t
        )
        assert "no report or heartbeat from the worker for 2 s" in trial["error"]
        assert wait_for(lambda: api.get(f"/api/v1/sweeps/{sweep.id}").json()["state"] == "failed")


def test_silent_trial_with_retries_runs_again_and_completes(tmp_path):
    with controller(f"sqlite:///{tmp_path / 'db'}", tmp_path, heartbeat_timeout_s=30) as api:
        sweep = store_sweep(
            api,
            state="running",
            objectives=[None],
            trial_state="running",
            run_cap=1,
            max_retries=1,
            started_at=long_ago(),
        )
        trial = wait_for(
            lambda: (
                (t := api.get(f"/api/v1/trials/{sweep.id}-0").json())["state"] == "completed" and t
            ),
            timeout_s=300,
        )
        assert trial["attempts"] == 2
        assert [entry["step"] for entry in trial["history"]] == [1]


def test_metrics_endpoint_counts_trials_reports_and_ray_resources(tmp_path):
    with controller(f"sqlite:///{tmp_path / 'db'}", tmp_path) as api:
        sweep = store_sweep(api, objectives=[0.5, None], trial_state="running")
        api.post(f"/api/v1/trials/{sweep.id}-1/reports", json={"step": 1, "metrics": {}})
        text = api.get("/metrics").text
        assert 'ktsweep_trials{state="running"} 2.0' in text
        assert "ktsweep_reports_total 1.0" in text
        assert 'ktsweep_ray_resources{kind="total",resource="CPU"}' in text
        assert "ktsweep_scheduling_latency_seconds_bucket" in text
        submitted = api.post("/api/v1/sweeps", json={**DIGITS_SPEC, "run_cap": 1}).json()
        wait_for(lambda: "ktsweep_scheduling_latency_seconds_count 1.0" in api.get("/metrics").text)
        api.post(f"/api/v1/sweeps/{submitted['id']}/cancel")


def test_logs_are_json_lines_with_sweep_and_trial_ids():
    record = logging.LogRecord(
        "ktsweep.service.scheduler", logging.INFO, __file__, 1, "trial %s ended", ("t-1",), None
    )
    record.sweep_id, record.trial_id = "s", "t-1"
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "trial t-1 ended"
    assert (entry["sweep_id"], entry["trial_id"], entry["level"]) == ("s", "t-1", "info")
