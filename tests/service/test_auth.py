"""Bearer tokens: writes and reads need one, trial tokens only report for their own trial."""

from __future__ import annotations

import pytest

from ktsweep.service.auth import trial_token
from tests.service.helpers import DIGITS_SPEC, controller, store_sweep

TOKEN = "s3cret-operator-token"


@pytest.fixture()
def api(database_url, tmp_path):
    with controller(database_url, tmp_path, api_tokens=TOKEN) as client:
        yield client


def write_requests(sweep_id: str, trial_id: str):
    return [
        ("POST", "/api/v1/sweeps", {"json": DIGITS_SPEC}),
        ("POST", f"/api/v1/sweeps/{sweep_id}/pause", {}),
        ("POST", f"/api/v1/sweeps/{sweep_id}/resume", {}),
        ("POST", f"/api/v1/sweeps/{sweep_id}/cancel", {}),
        ("POST", f"/api/v1/trials/{trial_id}/reports", {"json": {"step": 1, "metrics": {}}}),
        ("POST", f"/api/v1/trials/{trial_id}/heartbeat", {}),
    ]


def test_every_write_endpoint_answers_401_without_or_with_a_wrong_token(api):
    sweep = store_sweep(api, objectives=[0.5], trial_state="running")
    for method, path, kwargs in write_requests(sweep.id, f"{sweep.id}-0"):
        missing = api.request(method, path, **kwargs)
        assert missing.status_code == 401, path
        assert "KTSWEEP_API_TOKENS" in missing.json()["detail"]
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = api.request(method, path, headers={"Authorization": "Bearer nope"}, **kwargs)
        assert wrong.status_code == 401, path
    # Nothing was changed by the refused writes.
    listed = api.get("/api/v1/sweeps", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert [s["state"] for s in listed["items"]] == ["paused"]
    assert listed["items"][0]["trial_counts"]["running"] == 1


def test_reads_need_a_token_unless_open_reads(api, database_url, tmp_path):
    assert api.get("/api/v1/sweeps").status_code == 401
    ok = api.get("/api/v1/sweeps", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200


def test_open_reads_let_reads_through_but_not_writes(database_url, tmp_path):
    with controller(database_url, tmp_path, api_tokens=TOKEN, open_reads=True) as api:
        assert api.get("/api/v1/sweeps").status_code == 200
        assert api.post("/api/v1/sweeps", json=DIGITS_SPEC).status_code == 401


def test_trial_token_reports_for_its_trial_only(api):
    sweep = store_sweep(api, objectives=[None, None], trial_state="running")
    secret = api.app_state.scheduler.secret
    own = {"Authorization": f"Bearer {trial_token(secret, f'{sweep.id}-0')}"}
    body = {"step": 1, "metrics": {"val_accuracy": 0.7}}
    assert api.post(f"/api/v1/trials/{sweep.id}-0/reports", json=body, headers=own).json() == {
        "action": "continue"
    }
    other = api.post(f"/api/v1/trials/{sweep.id}-1/reports", json=body, headers=own)
    assert other.status_code == 403
    assert "only report for its own trial" in other.json()["detail"]
    # A trial token is no operator token.
    assert api.post(f"/api/v1/sweeps/{sweep.id}/cancel", headers=own).status_code == 401
    detail = api.get(
        f"/api/v1/trials/{sweep.id}-1", headers={"Authorization": f"Bearer {TOKEN}"}
    ).json()
    assert detail["history"] == []


def test_operator_token_is_accepted_for_writes(api):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    sweep = store_sweep(api)
    response = api.post(f"/api/v1/sweeps/{sweep.id}/cancel", headers=headers)
    assert response.status_code == 200 and response.json()["state"] == "cancelled"
