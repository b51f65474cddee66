"""A W&B `grid` or `random` sweep may leave `metric` out (W&B runs those): its trials run and
keep everything they log, and `best` says plainly that nothing is ranked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ktsweep.client import ApiError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "digits" / "sweep.yaml"


def spec_without_metric(method: str = "random") -> dict:
    spec = yaml.safe_load(EXAMPLE.read_text())
    del spec["metric"]
    spec.update(name=f"no-metric-{method}", method=method, run_cap=2, parallelism=2)
    spec["trial"]["fit"]["epochs"] = 2
    spec["callbacks"]["checkpoint"] = {"monitor": "val_loss"}
    return spec


def test_random_sweep_without_metric_runs_and_records_what_trials_log(client, server):
    sweep = client.submit(spec_without_metric())
    final = client.wait(sweep["id"], timeout_s=300)

    assert final["state"] == "finished", final
    assert final["trial_counts"]["completed"] == 2
    assert final["best_trial"] is None
    for trial in client.trials(sweep["id"]):
        assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(trial["metrics"])
        assert trial["objective"] is None
        detail = client.trial(trial["id"])
        assert [entry["step"] for entry in detail["history"]] == [1, 2]
        assert detail["wandb"]

    with pytest.raises(ApiError) as answer:
        client.best(sweep["id"])
    assert answer.value.status_code == 409
    assert "has no metric" in answer.value.detail

    done = subprocess.run(
        [sys.executable, "-m", "ktsweep.service.cli", "best", sweep["id"], "--url", server["url"]],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr
    assert "This sweep has no metric, so no trial is best" in done.stdout


def test_grid_sweep_without_metric_is_accepted(client):
    spec = spec_without_metric("grid")
    spec["parameters"] = {
        "units": {"values": [8, 16]},
        "dropout": {"value": 0.1},
        "learning_rate": {"value": 0.01},
    }

    sweep = client.submit(spec)

    assert sweep["state"] in ("running", "finished")
    client.cancel(sweep["id"])


def test_methods_that_compare_trials_still_need_a_metric(client):
    stopping = spec_without_metric("random")
    stopping["early_terminate"] = {"type": "median"}
    specs = [spec_without_metric(method) for method in ("bayes", "tpe", "hyperband")]
    for spec in [*specs, stopping]:
        with pytest.raises(ApiError) as answer:
            client.submit(spec)
        assert answer.value.status_code == 422, spec
        problems = {problem["path"]: problem["msg"] for problem in answer.value.detail}
        assert "name the metric to optimise" in problems["metric"], spec
