"""Each trial records the Ray node its latest attempt ran on; the schema change migrates."""

from __future__ import annotations

import socket

import ray
from sqlalchemy import create_engine, text

from ktsweep.service.db import migrate
from tests.service.helpers import DIGITS_SPEC, controller, database_at_revision, store_sweep
from tests.waiting import wait_for

NODE = {"id": "a1" * 28, "ip": "10.0.0.7", "hostname": "ray-worker-2"}


def test_heartbeat_records_the_node_and_bad_node_changes_nothing(database_url, tmp_path):
    with controller(database_url, tmp_path) as api:
        sweep = store_sweep(api, objectives=[None], trial_state="running")
        trial_path = f"/api/v1/trials/{sweep.id}-0"
        assert api.get(trial_path).json()["node"] is None

        answer = api.post(f"{trial_path}/heartbeat", json={"node": NODE})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"action": "continue"}
        assert api.get(trial_path).json()["node"] == NODE
        listed = api.get(f"/api/v1/sweeps/{sweep.id}/trials").json()["items"]
        assert listed[0]["node"] == NODE

        # A node field that is no printable text is refused with its path; the stored node
        # stays as it was.
        answer = api.post(f"{trial_path}/heartbeat", json={"node": {"hostname": "bad\nname"}})
        assert answer.status_code == 422
        assert any("node" in problem["path"] for problem in answer.json()["detail"])
        answer = api.post(f"{trial_path}/heartbeat", json={"node": {"rack": "b"}})
        assert answer.status_code == 422
        assert api.get(trial_path).json()["node"] == NODE

        # A heartbeat without a body still works and keeps the node.
        assert api.post(f"{trial_path}/heartbeat").status_code == 200
        assert api.get(trial_path).json()["node"] == NODE


def test_a_real_trial_records_the_ray_node_it_ran_on(tmp_path):
    spec = {**DIGITS_SPEC, "run_cap": 1}
    with controller(f"sqlite:///{tmp_path / 'db'}", tmp_path) as api:
        sweep = api.post("/api/v1/sweeps", json=spec).json()
        trial_path = f"/api/v1/trials/{sweep['id']}-0"
        # Until the scheduler creates the trial, its URL answers 404 (no "state").
        trial = wait_for(
            lambda: (t := api.get(trial_path).json()).get("state") in ("completed", "failed") and t,
            timeout_s=300,
        )
        assert trial["state"] == "completed", trial["error"]
        (node,) = [node for node in ray.nodes() if node["Alive"]]
        assert trial["node"] == {
            "id": node["NodeID"],
            "ip": node["NodeManagerAddress"],
            "hostname": socket.gethostname(),
        }


def test_upgrading_a_database_of_the_first_schema_keeps_its_trials(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'old.sqlite'}")
    with database_at_revision(engine, "0001") as connection:
        connection.execute(
            text(
                "INSERT INTO trials (id, sweep_id, number, state, hyperparameters, metrics, "
                "epochs, attempts, created_at) VALUES ('s1-0', 's1', 0, 'completed', "
                "'{\"units\": 16}', '{}', 3, 1, '2026-01-01 00:00:00')"
            )
        )

    migrate(engine)

    with engine.connect() as connection:
        rows = connection.execute(text("SELECT id, epochs, node FROM trials")).all()
        version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert [tuple(row) for row in rows] == [("s1-0", 3, None)]
    assert version == "0003"
