"""Pause, resume, cancel; lists with filters, ordering and cursors; allowed modules; reports."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from ktsweep.service import sweeps as store
from ktsweep.service.models import TrialReport
from tests.service.helpers import DIGITS_SPEC, controller, store_sweep


@pytest.fixture()
def api(database_url, tmp_path):
    with controller(database_url, tmp_path) as client:
        yield client


def test_pause_resume_cancel_follow_the_state_machine(api):
    # run_cap 1, filled by the stored running trial: the scheduler starts nothing more.
    sweep = store_sweep(api, state="running", objectives=[None], trial_state="running", run_cap=1)
    assert api.post(f"/api/v1/sweeps/{sweep.id}/pause").json()["state"] == "paused"
    assert api.post(f"/api/v1/sweeps/{sweep.id}/pause").json()["state"] == "paused"
    assert api.post(f"/api/v1/sweeps/{sweep.id}/resume").json()["state"] == "running"
    cancelled = api.post(f"/api/v1/sweeps/{sweep.id}/cancel").json()
    assert cancelled["state"] == "cancelled"
    assert cancelled["trial_counts"]["cancelled"] == 1 and cancelled["trial_counts"]["running"] == 0
    refused = api.post(f"/api/v1/sweeps/{sweep.id}/resume")
    assert refused.status_code == 409
    assert "cancelled" in refused.json()["detail"]
    assert api.get(f"/api/v1/sweeps/{sweep.id}").json()["state"] == "cancelled"


def test_report_for_a_cancelled_trial_answers_stop(api):
    sweep = store_sweep(api, objectives=[None], trial_state="running")
    api.post(f"/api/v1/sweeps/{sweep.id}/cancel")
    answer = api.post(f"/api/v1/trials/{sweep.id}-0/reports", json={"step": 1, "metrics": {}})
    assert answer.json() == {"action": "stop"}


def test_report_for_a_completed_trial_is_a_conflict_and_changes_nothing(api):
    sweep = store_sweep(api, objectives=[0.9])
    answer = api.post(
        f"/api/v1/trials/{sweep.id}-0/reports", json={"step": 9, "metrics": {"val_accuracy": 0.1}}
    )
    assert answer.status_code == 409
    assert api.get(f"/api/v1/trials/{sweep.id}-0").json()["metrics"] == {"val_accuracy": 0.9}


def test_trials_ordered_by_metric_follow_the_goal_and_page_with_cursors(api):
    objectives = [0.3, None, 0.9, 0.5, 0.7, 0.1, None]
    sweep = store_sweep(api, objectives=objectives)
    seen, cursor = [], None
    while True:
        params = {"order": "metric", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.get(f"/api/v1/sweeps/{sweep.id}/trials", params=params).json()
        seen += [trial["objective"] for trial in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [0.9, 0.7, 0.5, 0.3, 0.1, None, None]
    minimize = store_sweep(api, objectives=[0.3, 0.9, 0.1], goal="minimize")
    listed = api.get(f"/api/v1/sweeps/{minimize.id}/trials", params={"order": "metric"}).json()
    assert [t["objective"] for t in listed["items"]] == [0.1, 0.3, 0.9]
    assert api.get(f"/api/v1/sweeps/{sweep.id}/best").json()["objective"] == 0.9


def test_trials_filter_by_state_and_page_by_number(api):
    sweep = store_sweep(api, objectives=[0.1] * 5)
    store_sweep(api, objectives=[0.2] * 2, trial_state="failed")
    page = api.get(f"/api/v1/sweeps/{sweep.id}/trials", params={"limit": 3}).json()
    assert [t["number"] for t in page["items"]] == [0, 1, 2]
    rest = api.get(
        f"/api/v1/sweeps/{sweep.id}/trials", params={"limit": 3, "cursor": page["next_cursor"]}
    ).json()
    assert [t["number"] for t in rest["items"]] == [3, 4] and rest["next_cursor"] is None
    failed = api.get(f"/api/v1/sweeps/{sweep.id}/trials", params={"state": "failed"}).json()
    assert failed["items"] == []


def test_sweeps_list_newest_first_with_state_filter_and_cursor(api):
    ids = [store_sweep(api).id for _ in range(3)]
    cancelled = store_sweep(api, state="cancelled").id
    listed = api.get("/api/v1/sweeps", params={"limit": 2}).json()
    assert [s["id"] for s in listed["items"]] == [cancelled, ids[2]]
    rest = api.get("/api/v1/sweeps", params={"limit": 2, "cursor": listed["next_cursor"]}).json()
    assert [s["id"] for s in rest["items"]] == [ids[1], ids[0]]
    paused = api.get("/api/v1/sweeps", params={"state": "paused"}).json()
    assert len(paused["items"]) == 3


def test_a_cursor_from_elsewhere_is_a_clear_422(api):
    sweep = store_sweep(api, objectives=[0.1])
    answer = api.get(f"/api/v1/sweeps/{sweep.id}/trials", params={"cursor": "garbage!"})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["path"] == "cursor"


def test_entry_point_outside_allowed_modules_is_422_saying_how_to_allow_it(api):
    spec = {**DIGITS_SPEC, "trial": {**DIGITS_SPEC["trial"], "hypermodel": "os:system"}}
    answer = api.post("/api/v1/sweeps", json=spec)
    assert answer.status_code == 422
    (problem,) = answer.json()["detail"]
    assert problem["path"] == "trial.hypermodel"
    assert "KTSWEEP_ALLOWED_MODULES" in problem["msg"]
    assert api.get("/api/v1/sweeps").json()["items"] == []


def test_operator_can_allow_more_modules(database_url, tmp_path):
    with controller(database_url, tmp_path, allowed_modules="mycompany.models") as api:
        spec = {**DIGITS_SPEC, "trial": {**DIGITS_SPEC["trial"]}}
        assert api.post("/api/v1/sweeps", json=spec).status_code == 422  # examples not allowed now
        spec["trial"]["hypermodel"] = "mycompany.models.mlp:build"
        spec["trial"]["data"] = "mycompany.models.mlp:data"
        answer = api.post("/api/v1/sweeps", json={**spec, "run_cap": 1})
        assert answer.status_code == 201
        api.post(f"/api/v1/sweeps/{answer.json()['id']}/cancel")


def test_concurrent_reports_keep_one_row_per_step(api):
    sweep = store_sweep(api, objectives=[None], trial_state="running")
    trial_id = f"{sweep.id}-0"
    sessions = api.app_state.sessions
    errors = []

    def report(step: int) -> None:
        try:
            with sessions() as session:
                store.record_report(session, trial_id, step, {"val_accuracy": step / 100})
        except Exception as exc:  # collected; the assertion below names it
            errors.append(exc)

    threads = [threading.Thread(target=report, args=(1 + i % 10,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with sessions() as session:
        steps = session.scalars(
            select(TrialReport.step).where(TrialReport.trial_id == trial_id)
        ).all()
        trial = store.get_trial(session, trial_id)
    assert sorted(steps) == list(range(1, 11))
    assert trial.epochs == 10 and trial.metrics == {"val_accuracy": 0.1}
