"""The CLI's trial table: a node column only when the trials ran on more than one machine."""

from __future__ import annotations

from rich.console import Console

from ktsweep.service.cli import _progress_view


def rendered(nodes: list[dict | None]) -> str:
    sweep = {
        "name": "digits",
        "state": "running",
        "spec": {"metric": {"name": "val_accuracy"}, "run_cap": len(nodes)},
        "trial_counts": {"total": len(nodes), "pending": 0, "running": len(nodes)},
    }
    trials = [
        {
            "id": f"s-{number}",
            "state": "running",
            "hyperparameters": {"units": 16},
            "epochs": 1,
            "metrics": {"val_accuracy": 0.5},
            "node": node,
        }
        for number, node in enumerate(nodes)
    ]
    console = Console(record=True, width=160)
    console.print(_progress_view(sweep, trials))
    return console.export_text()


def test_trials_on_two_nodes_show_each_trials_node():
    text = rendered([{"hostname": "worker-a", "ip": "10.0.0.1"}, {"hostname": "worker-b"}, None])
    assert "node" in text
    assert "worker-a" in text and "worker-b" in text


def test_trials_on_one_machine_leave_the_column_out():
    text = rendered([{"hostname": "laptop"}, {"hostname": "laptop"}, None])
    assert "laptop" not in text
    assert "node" not in text
