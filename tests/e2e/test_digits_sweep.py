"""The vertical slice over real HTTP: submit the digits sweep, run it on Ray, read the results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from ktsweep.client import ApiError
from tests.e2e.wandb_endpoint import WandbEndpoint

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "digits" / "sweep.yaml"


@pytest.fixture(scope="module")
def finished_digits_sweep(server):
    from ktsweep.client import Client

    with Client(server["url"]) as api:
        sweep = api.submit(EXAMPLE)
        final = api.wait(sweep["id"], timeout_s=600)
        yield final, api.trials(sweep["id"])


def test_digits_sweep_runs_exactly_run_cap_trials_all_completed(finished_digits_sweep):
    sweep, trials = finished_digits_sweep
    assert sweep["state"] == "finished"
    assert len(trials) == 8
    assert [t["state"] for t in trials] == ["completed"] * 8
    assert sweep["trial_counts"]["completed"] == 8


def test_every_trial_has_one_metrics_entry_per_epoch(finished_digits_sweep, client):
    _, trials = finished_digits_sweep
    for trial in trials:
        detail = client.trial(trial["id"])
        assert [entry["step"] for entry in detail["history"]] == [1, 2, 3, 4, 5]
        assert all("val_accuracy" in entry["metrics"] for entry in detail["history"])


def test_every_trial_has_its_offline_wandb_run_on_disk(finished_digits_sweep, server):
    _, trials = finished_digits_sweep
    run_dirs = set()
    for trial in trials:
        link = trial["wandb"]
        run_dir = Path(link["run_dir"])
        assert run_dir.is_dir() and run_dir.is_relative_to(server["artifacts"])
        assert any(run_dir.glob("*.wandb")), f"no W&B run file in {run_dir}"
        assert link["sync_command"] == f"wandb sync {run_dir}"
        run_dirs.add(run_dir)
    assert len(run_dirs) == len(trials)


def test_best_trial_is_the_max_val_accuracy_and_above_half(finished_digits_sweep, client):
    sweep, trials = finished_digits_sweep
    best = client.best(sweep["id"])
    assert best["objective"] == max(t["metrics"]["val_accuracy"] for t in trials)
    assert best["objective"] > 0.5
    assert best["wandb"]["sync_command"].startswith("wandb sync ")
    assert sweep["best_trial"]["id"] == best["id"]


def test_sweep_never_ran_more_than_parallelism_trials_at_once(finished_digits_sweep):
    _, trials = finished_digits_sweep
    events = sorted(
        [(t["started_at"], 1) for t in trials] + [(t["finished_at"], -1) for t in trials],
        key=lambda event: (event[0], event[1]),
    )
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    assert peak <= 2


def _sync(server, sweep_id: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "ktsweep.service.cli",
            "sync",
            sweep_id,
            "--url",
            server["url"],
            *args,
        ],
        cwd=REPO,
        env={**os.environ, "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_sync_uploads_every_offline_run_to_the_configured_wandb_server(
    finished_digits_sweep, server, client
):
    sweep, trials = finished_digits_sweep
    dry = _sync(server, sweep["id"], "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert dry.stdout.count("wandb sync ") == len(trials)

    with WandbEndpoint() as wandb_server:
        done = _sync(
            server,
            sweep["id"],
            WANDB_BASE_URL=wandb_server.url,
            WANDB_API_KEY="local-" + "k" * 40,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.count(": uploaded") == len(trials)
        created = {variables.get("name") for variables in wandb_server.graphql("UpsertBucket")}
        for trial in trials:
            run_id = trial["wandb"]["run_id"]
            assert run_id in created
            # The run's logged epochs reached the server, the trial's last value among them.
            rows = [
                json.loads(line)
                for body in wandb_server.streamed(run_id)
                for line in body["files"].get("wandb-history.jsonl", {}).get("content", [])
            ]
            logged = [row["epoch/val_accuracy"] for row in rows if "epoch/val_accuracy" in row]
            assert len(logged) == 5
            assert logged[-1] == pytest.approx(trial["metrics"]["val_accuracy"], rel=1e-5)
            # And so did its checkpoints, as the run's model artifact.
            models = wandb_server.uploaded(f"artifacts/run_{run_id}_model")
            assert any(path.endswith(".keras") and size > 0 for path, size in models.items())
        # Then the best trial's run, and only it, carries the tag `best` (wandb's public API).
        best_run = client.best(sweep["id"])["wandb"]["run_id"]
        tagged = {run_id for run_id, tags in wandb_server.tags.items() if "best" in tags}
        assert tagged == {best_run}
        assert "W&B tag 'best': added to 1 run(s)" in done.stdout


def test_unknown_top_level_field_is_rejected_and_nothing_stored(client, server):
    before = len(client.sweeps())
    spec = yaml.safe_load(EXAMPLE.read_text()) | {"epochz": 3}
    with pytest.raises(ApiError) as caught:
        client.submit(spec)
    assert caught.value.status_code == 422
    assert [p["path"] for p in caught.value.detail] == ["epochz"]
    assert len(client.sweeps()) == before


def test_min_greater_than_max_is_rejected_with_its_path(client, server):
    before = len(client.sweeps())
    spec = yaml.safe_load(EXAMPLE.read_text())
    spec["parameters"]["dropout"] = {"min": 0.5, "max": 0.1}
    response = httpx.post(
        f"{server['url']}/api/v1/sweeps",
        content=yaml.safe_dump(spec),
        headers={"Content-Type": "application/yaml", **server["auth"]},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["path"] == "parameters.dropout.min"
    assert "greater than max" in response.json()["detail"][0]["msg"]
    assert len(client.sweeps()) == before


def test_hypermodel_that_does_not_import_fails_its_trials_and_sweep_goes_on(client):
    spec = yaml.safe_load(EXAMPLE.read_text())
    spec.update(name="broken-import", run_cap=3, parallelism=1)
    spec["trial"]["hypermodel"] = "ktsweep.examples.no_such_module:build_model"
    sweep = client.submit(spec)
    final = client.wait(sweep["id"], timeout_s=300)
    trials = client.trials(sweep["id"])
    assert len(trials) == 3
    for trial in trials:
        detail = client.trial(trial["id"])
        assert detail["state"] == "failed"
        assert "No module named 'ktsweep.examples.no_such_module'" in detail["error"]
    assert final["state"] == "failed"  # no trial succeeded, but every one of run_cap was tried


def test_unknown_ids_answer_404_with_a_hint(client):
    with pytest.raises(ApiError) as caught:
        client.sweep("nope")
    assert caught.value.status_code == 404 and "GET /api/v1/sweeps" in caught.value.detail
    with pytest.raises(ApiError) as caught:
        client.trial("nope")
    assert caught.value.status_code == 404


def test_wandb_program_sweep_runs_the_script_unchanged(client):
    spec = yaml.safe_load((REPO / "examples" / "wandb_program" / "sweep.yaml").read_text())
    spec.update(working_dir=str(REPO / "examples" / "wandb_program"), run_cap=2)
    sweep = client.submit(spec)
    final = client.wait(sweep["id"], timeout_s=400)
    trials = client.trials(sweep["id"])
    assert final["state"] == "finished", [t["error"] for t in trials]
    assert [t["state"] for t in trials] == ["completed"] * 2
    for trial in trials:
        detail = client.trial(trial["id"])
        assert len(detail["history"]) == 3
        assert all("val_accuracy" in entry["metrics"] for entry in detail["history"])
    assert client.best(sweep["id"])["objective"] > 0.5


def test_program_outside_allowed_folders_is_refused(client):
    spec = yaml.safe_load((REPO / "examples" / "wandb_program" / "sweep.yaml").read_text())
    spec["working_dir"] = "/"
    with pytest.raises(ApiError) as caught:
        client.submit(spec)
    assert caught.value.status_code == 422
    assert caught.value.detail[0]["path"] == "program"
    assert "KTSWEEP_ALLOWED_PROGRAM_DIRS" in caught.value.detail[0]["msg"]
