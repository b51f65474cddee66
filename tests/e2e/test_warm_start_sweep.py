"""A warm-started sweep (`prior_sweeps`), through a real `ktsweep serve` and real Ray: the API
and the CLI show what the warm start learned from the earlier sweep and what it skipped."""

from __future__ import annotations

from typer.testing import CliRunner

from ktsweep.service.cli import app


def sleeping_spec(name: str, method: str, epoch_s: dict, **extra) -> dict:
    """A sweep of `ktsweep.examples.trivial`'s model, whose epochs only sleep `epoch_s`."""
    return {
        "name": name,
        "method": method,
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"epoch_s": epoch_s},
        "parallelism": 2,
        "trial": {
            "hypermodel": "ktsweep.examples.trivial:build_model",
            "data": "ktsweep.examples.trivial:load_data",
            "fit": {"epochs": 1},
        },
        "wandb": {"mode": "disabled"},
        **extra,
    }


def test_a_warm_started_sweep_shows_what_it_learned_and_skipped(client, server):
    # Three prior trials: 0.0 and 0.01 lie in the new sweep's range, 0.5 does not.
    prior = client.submit(sleeping_spec("prior", "grid", {"values": [0.0, 0.01, 0.5]}))
    finished = client.wait(prior["id"], timeout_s=300)
    assert finished["trial_counts"]["completed"] == 3, finished
    assert finished["warm_start"] is None  # no prior sweeps of its own

    sweep = client.submit(
        sleeping_spec(
            "warm", "tpe", {"min": 0.0, "max": 0.1}, run_cap=2, prior_sweeps=[prior["id"]]
        )
    )
    final = client.wait(sweep["id"], timeout_s=300)

    assert final["state"] == "finished", final
    assert final["warm_start"] == {
        "prior_sweeps": [prior["id"]],
        "learned": 2,
        "skipped_outside_space": 1,
        "skipped_without_objective": 0,
    }
    # The prior trials taught the method only: the new sweep ran its own two.
    assert final["trial_counts"]["total"] == 2
    shown = CliRunner().invoke(app, ["status", sweep["id"], "--url", server["url"]])
    assert shown.exit_code == 0, shown.output
    assert (
        f"warm start from {prior['id']}: learned 2 trials, skipped 1 outside the space and 0 "
        "without the metric" in " ".join(shown.output.split())
    )
