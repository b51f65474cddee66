"""A digits sweep whose trials come from the user's own Ax code (`scheduler: {engine: ax,
source, optimizer, search_space}`, examples/ax_scheduler/), through a real `ktsweep serve`
and real Ray."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ktsweep.client import ApiError

pytest.importorskip("ax")

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "ax_scheduler" / "sweep.yaml"


def ax_code_spec(**scheduler_changes) -> dict:
    spec = yaml.safe_load(EXAMPLE.read_text())
    spec.update(run_cap=3, parallelism=2)
    spec["trial"]["fit"]["epochs"] = 1
    spec["wandb"]["mode"] = "disabled"
    spec["scheduler"].update(scheduler_changes)
    return spec


def test_a_sweep_runs_the_users_ax_client_and_search_space(client):
    sweep = client.submit(ax_code_spec())
    final = client.wait(sweep["id"], timeout_s=600)

    assert final["state"] == "finished", final
    assert final["trial_counts"]["completed"] == 3
    configs = [trial["hyperparameters"] for trial in client.trials(sweep["id"])]
    for config in configs:
        # What examples/ax_scheduler/client.py's `search_space` defines, and nothing else.
        assert set(config) == {"units", "dropout", "learning_rate"}
        assert config["units"] in (16, 32, 64, 128)
        assert 0.0 <= config["dropout"] <= 0.5
        assert 1e-3 <= config["learning_rate"] <= 3e-2
    assert len({config["learning_rate"] for config in configs}) == 3
    assert final["best_trial"] is not None


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"optimizer": "no_such_function"}, "scheduler.optimizer"),
        ({"search_space": "RangeParameterConfig"}, "scheduler.search_space"),
        ({"source": "../outside.py"}, "scheduler.source"),
    ],
)
def test_ax_scheduler_code_problems_are_422_with_their_path(client, changes, path):
    with pytest.raises(ApiError) as answer:
        client.submit(ax_code_spec(**changes))
    assert answer.value.status_code == 422
    assert path in {problem["path"] for problem in answer.value.detail}
