"""A multi-objective sweep, written as W&B writes one (`method: custom`, `metrics`,
`scheduler: {engine: optuna}`), through a real `ktsweep serve` and real Ray: it ends with a
Pareto front, and every trial knows its cost."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ktsweep.client import ApiError, Client
from tests.e2e.wandb_endpoint import WandbEndpoint

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "digits" / "sweep.yaml"
OBJECTIVES = [
    {"name": "val_accuracy", "goal": "maximize"},
    {"name": "model/parameters", "goal": "minimize"},
]


def multi_objective_spec(**changes) -> dict:
    spec = yaml.safe_load(EXAMPLE.read_text())
    del spec["metric"]
    spec.update(
        name="accuracy-vs-size",
        method="custom",
        metrics=OBJECTIVES,
        scheduler={"engine": "optuna"},
        run_cap=6,
        parallelism=2,
    )
    spec["parameters"] = {
        "units": {"values": [8, 16, 32, 64]},
        "dropout": {"value": 0.1},
        "learning_rate": {"values": [0.003, 0.03]},
    }
    spec["trial"]["fit"]["epochs"] = 2
    spec.update(changes)
    return spec


def dominates(a: dict, b: dict) -> bool:
    at_least = a["val_accuracy"] >= b["val_accuracy"] and (
        a["model/parameters"] <= b["model/parameters"]
    )
    return at_least and a != b


@pytest.fixture(scope="module")
def front_sweep(server):
    with Client(server["url"]) as api:
        sweep = api.submit(multi_objective_spec())
        return sweep, api.wait(sweep["id"], timeout_s=600)


def test_two_objective_sweep_finishes_with_a_pareto_front(client, server, front_sweep):
    sweep, final = front_sweep

    assert final["state"] == "finished", final
    assert final["trial_counts"]["completed"] == 6
    assert final["best_trial"] is None
    trials = client.trials(sweep["id"])
    for trial in trials:
        assert trial["metrics"]["model/parameters"] > 0
        assert trial["metrics"]["model/fit_time_s"] > 0

    best = client.best(sweep["id"])
    assert best["objectives"] == OBJECTIVES
    front = best["front"]
    assert front and final["pareto_front_size"] == len(front)
    for trial in front:
        assert set(trial["objectives"]) == {"val_accuracy", "model/parameters"}
        assert trial["objectives"]["val_accuracy"] == trial["metrics"]["val_accuracy"]
    values = [trial["objectives"] for trial in front]
    assert not any(dominates(a, b) for a in values for b in values)
    # Every trial off the front is dominated by one on it.
    on_front = {trial["id"] for trial in front}
    for trial in trials:
        if trial["id"] not in on_front:
            mine = {name: trial["metrics"][name] for name in values[0]}
            assert any(dominates(other, mine) for other in values), trial

    shown = subprocess.run(
        [sys.executable, "-m", "ktsweep.service.cli", "best", sweep["id"], "--url", server["url"]],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert shown.returncode == 0, shown.stderr
    assert "Pareto front" in shown.stdout
    for trial in front:
        assert trial["id"] in shown.stdout


def test_sync_tags_the_runs_of_the_front_in_wandb(client, server, front_sweep):
    sweep, _ = front_sweep
    front_runs = {t["wandb"]["run_id"] for t in client.best(sweep["id"])["front"]}
    all_runs = {t["wandb"]["run_id"] for t in client.trials(sweep["id"])}
    assert front_runs < all_runs  # a front that leaves some trials out (asserted above)

    def sync():
        return subprocess.run(
            [sys.executable, "-m", "ktsweep.service.cli", "sync", sweep["id"]]
            + ["--url", server["url"]],
            capture_output=True,
            text=True,
            env={
                **os.environ,
                "COLUMNS": "200",
                "WANDB_BASE_URL": wandb_server.url,
                "WANDB_API_KEY": "local-" + "k" * 40,
            },
            timeout=600,
        )

    with WandbEndpoint() as wandb_server:
        done = sync()
        assert done.returncode == 0, done.stdout + done.stderr
        tagged = {run for run, tags in wandb_server.tags.items() if "pareto-front" in tags}
        assert tagged == front_runs
        assert f"W&B tag 'pareto-front': added to {len(front_runs)} run(s)" in done.stdout

        # A run tagged by hand (or by an earlier sync, before the front moved) loses the tag.
        off_front = sorted(all_runs - front_runs)[0]
        wandb_server.tags[off_front] = ["pareto-front", "mine"]
        again = sync()
        assert again.returncode == 0, again.stdout + again.stderr
        assert wandb_server.tags[off_front] == ["mine"]
        assert "added to 0 run(s), removed from 1" in again.stdout


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"metric": {"name": "val_loss"}}, "metrics"),
        ({"method": "tpe", "scheduler": None}, "method"),
        ({"early_terminate": {"type": "median"}}, "early_terminate"),
        ({"metrics": OBJECTIVES[:1]}, "metrics"),
        ({"scheduler": {"engine": "wandb"}}, "scheduler.engine"),
        pytest.param(
            {"scheduler": {"engine": "ax"}},
            "scheduler.engine",
            marks=pytest.mark.skipif(
                importlib.util.find_spec("ax") is not None, reason="ax is installed: it runs"
            ),
        ),
        ({"scheduler": {"engine": "optuna", "source": "study.py"}}, "scheduler.source"),
    ],
)
def test_multi_objective_spec_problems_are_422_with_their_path(client, changes, path):
    spec = {key: value for key, value in multi_objective_spec(**changes).items() if value}
    with pytest.raises(ApiError) as answer:
        client.submit(spec)
    assert answer.value.status_code == 422
    assert path in {problem["path"] for problem in answer.value.detail}
