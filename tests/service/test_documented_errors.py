"""Every error status the OpenAPI schema documents can really be reached, and says why."""

from __future__ import annotations

from ktsweep.service.auth import trial_token
from tests.service.helpers import DIGITS_SPEC, controller, store_sweep

TOKEN = "operator-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def documented_errors(openapi: dict) -> set[tuple[str, str, int]]:
    """Documented 4xx/5xx per operation (the readiness probe's 503 has its own test)."""
    return {
        (method.upper(), path, int(status))
        for path, operations in openapi["paths"].items()
        for method, operation in operations.items()
        for status in operation.get("responses", {})
        if status.isdigit() and int(status) >= 400 and path != "/readyz"
    }


def test_every_documented_error_status_is_reachable(tmp_path):
    with controller(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, api_tokens=TOKEN) as api:
        paused = store_sweep(api, objectives=[0.5, None], trial_state="running")
        done = store_sweep(api, state="finished", objectives=[0.9])
        empty = store_sweep(api)
        unranked = store_sweep(api, state="finished", objectives=[None], metric=False)
        other_trial = trial_token(api.app_state.scheduler.secret, f"{paused.id}-1")
        report = {"step": 1, "metrics": {"val_accuracy": 0.5}}
        sweep_path = "/api/v1/sweeps/{sweep_id}"
        trial_path = "/api/v1/trials/{trial_id}"
        # (method, documented path, status) -> (concrete path, request options)
        reached = {
            ("POST", "/api/v1/sweeps", 401): ("/api/v1/sweeps", {"json": DIGITS_SPEC}),
            ("POST", "/api/v1/sweeps", 422): (
                "/api/v1/sweeps",
                {"json": {**DIGITS_SPEC, "run_cap": -1}, "headers": AUTH},
            ),
            ("GET", "/api/v1/sweeps", 401): ("/api/v1/sweeps", {}),
            ("GET", "/api/v1/sweeps", 422): (
                "/api/v1/sweeps",
                {"params": {"limit": 0}, "headers": AUTH},
            ),
            ("GET", sweep_path, 401): (f"/api/v1/sweeps/{paused.id}", {}),
            ("GET", sweep_path, 404): ("/api/v1/sweeps/none", {"headers": AUTH}),
            ("GET", sweep_path + "/trials", 401): (f"/api/v1/sweeps/{paused.id}/trials", {}),
            ("GET", sweep_path + "/trials", 404): ("/api/v1/sweeps/none/trials", {"headers": AUTH}),
            ("GET", sweep_path + "/trials", 422): (
                f"/api/v1/sweeps/{paused.id}/trials",
                {"params": {"order": "colour"}, "headers": AUTH},
            ),
            ("GET", sweep_path + "/best", 401): (f"/api/v1/sweeps/{done.id}/best", {}),
            ("GET", sweep_path + "/best", 404): (
                f"/api/v1/sweeps/{empty.id}/best",
                {"headers": AUTH},
            ),
            ("GET", sweep_path + "/best", 409): (
                f"/api/v1/sweeps/{unranked.id}/best",
                {"headers": AUTH},
            ),
            ("GET", trial_path, 401): (f"/api/v1/trials/{paused.id}-0", {}),
            ("GET", trial_path, 404): ("/api/v1/trials/none", {"headers": AUTH}),
            ("POST", trial_path + "/reports", 401): (
                f"/api/v1/trials/{paused.id}-0/reports",
                {"json": report},
            ),
            ("POST", trial_path + "/reports", 403): (
                f"/api/v1/trials/{paused.id}-0/reports",
                {"json": report, "headers": {"Authorization": f"Bearer {other_trial}"}},
            ),
            ("POST", trial_path + "/reports", 404): (
                "/api/v1/trials/none/reports",
                {"json": report, "headers": AUTH},
            ),
            ("POST", trial_path + "/reports", 409): (
                f"/api/v1/trials/{done.id}-0/reports",
                {"json": report, "headers": AUTH},
            ),
            ("POST", trial_path + "/reports", 422): (
                f"/api/v1/trials/{paused.id}-0/reports",
                {"json": {"step": -1, "metrics": {}}, "headers": AUTH},
            ),
            ("POST", trial_path + "/heartbeat", 401): (
                f"/api/v1/trials/{paused.id}-0/heartbeat",
                {},
            ),
            ("POST", trial_path + "/heartbeat", 403): (
                f"/api/v1/trials/{paused.id}-0/heartbeat",
                {"headers": {"Authorization": f"Bearer {other_trial}"}},
            ),
            ("POST", trial_path + "/heartbeat", 404): (
                "/api/v1/trials/none/heartbeat",
                {"headers": AUTH},
            ),
            ("POST", trial_path + "/heartbeat", 409): (
                f"/api/v1/trials/{done.id}-0/heartbeat",
                {"headers": AUTH},
            ),
            ("POST", trial_path + "/heartbeat", 422): (
                f"/api/v1/trials/{paused.id}-0/heartbeat",
                {"json": {"node": {"hostname": "no\tprintable"}}, "headers": AUTH},
            ),
        }
        for action in ("pause", "resume", "cancel"):
            path = f"{sweep_path}/{action}"
            reached[("POST", path, 401)] = (f"/api/v1/sweeps/{paused.id}/{action}", {})
            reached[("POST", path, 404)] = (f"/api/v1/sweeps/none/{action}", {"headers": AUTH})
            reached[("POST", path, 409)] = (f"/api/v1/sweeps/{done.id}/{action}", {"headers": AUTH})

        documented = documented_errors(api.get("/openapi.json").json())
        assert documented == set(reached), documented ^ set(reached)
        for (method, _, status), (path, options) in sorted(reached.items()):
            response = api.request(method, path, **options)
            assert response.status_code == status, (method, path, response.text)
            detail = response.json()["detail"]
            assert detail, (method, path)
            if status == 422:
                assert all(problem["path"] and problem["msg"] for problem in detail)


def test_readyz_is_503_until_the_scheduler_runs(tmp_path):
    from fastapi.testclient import TestClient

    from ktsweep.service.app import create_app
    from ktsweep.service.config import Settings

    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite'}"))
    not_started = TestClient(app)  # no `with`: the app's startup has not run
    answer = not_started.get("/readyz")
    assert answer.status_code == 503
    assert "scheduler: not running" in answer.json()["problems"]
    with TestClient(app) as started:
        assert started.get("/readyz").json() == {"status": "ready"}
