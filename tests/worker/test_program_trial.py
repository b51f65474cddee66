"""`program` trials: an unchanged W&B-sweep script, run as a W&B agent would run it."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from ktsweep.worker import TrialSpec, run_program_trial
from ktsweep.worker.program_trial import find_run_dir, read_history, sweep_command

SCRIPT = textwrap.dedent(
    """
    import argparse, json, time
    import wandb

    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float)
    parser.add_argument("--epochs", type=int)
    args = parser.parse_args()
    run = wandb.init()
    with open("seen.json", "w") as seen:
        json.dump({"args": vars(args), "config": dict(run.config)}, seen)
    for epoch in range(run.config.epochs):
        wandb.log({"val_loss": 1.0 / (epoch + 1), "epoch": epoch})
        time.sleep(0.2)
    run.finish()
    """
)


class SpyReporter:
    def __init__(self, stop_at=None):
        self.reports = []
        self.stop_at = stop_at

    def report(self, step, metrics, checkpoint=None):
        self.reports.append((step, metrics))
        return "stop" if self.stop_at is not None and step >= self.stop_at else "continue"


def program_trial(tmp_path: Path, epochs: int, **changes) -> TrialSpec:
    (tmp_path / "train.py").write_text(SCRIPT)
    spec = TrialSpec(
        trial_id="p-0",
        sweep_id="s",
        hyperparameters={"lr": 0.01, "epochs": epochs},
        program="train.py",
        working_dir=str(tmp_path),
        wandb={"project": "tests", "mode": "offline", "dir": str(tmp_path / "runs")},
    )
    for name, value in changes.items():
        setattr(spec, name, value)
    return spec


def test_program_gets_its_parameters_as_arguments_and_wandb_config(tmp_path):
    spy = SpyReporter()
    result = run_program_trial(program_trial(tmp_path, epochs=3), spy)
    assert result.state == "completed", result.error
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen["args"] == {"lr": 0.01, "epochs": 3}
    assert seen["config"] == {"lr": 0.01, "epochs": 3}
    assert [step for step, _ in spy.reports] == [1, 2, 3]
    assert spy.reports[-1][1]["val_loss"] == pytest.approx(1 / 3)
    run_dir = Path(result.wandb["run_dir"])
    assert run_dir == find_run_dir(tmp_path / "runs", result.wandb["run_id"])
    logged = read_history(run_dir / f"run-{result.wandb['run_id']}.wandb")
    assert [row["val_loss"] for row in logged] == [m["val_loss"] for _, m in spy.reports]


def test_a_stop_answer_ends_the_program_early(tmp_path):
    spy = SpyReporter(stop_at=2)
    result = run_program_trial(program_trial(tmp_path, epochs=200), spy)
    assert result.state == "stopped"
    assert len(spy.reports) == 2
    assert result.epochs < 200


def test_a_failing_program_reports_its_exit_code_and_output(tmp_path):
    spec = program_trial(
        tmp_path, epochs=2, command=["${env}", "${interpreter}", "${program}", "${args_no_hyphens}"]
    )
    result = run_program_trial(spec, SpyReporter())
    assert result.state == "failed"
    assert "exited with code 2" in result.error
    assert "unrecognized arguments: lr=0.01 epochs=2" in result.error


def test_sweep_command_expands_wandb_macros(tmp_path):
    command = sweep_command(
        [
            "${env}",
            "python",
            "${program}",
            "${args_no_hyphens}",
            "${args_json_file}",
            "${args_json}",
        ],
        "train.py",
        {"lr": 0.1, "layers": 2},
        tmp_path / "args.json",
    )
    assert command == [
        "/usr/bin/env",
        sys.executable,  # a literal `python` is the interpreter ktsweep runs on
        "train.py",
        "lr=0.1",
        "layers=2",
        str(tmp_path / "args.json"),
        '{"lr": 0.1, "layers": 2}',
    ]
    with pytest.raises(ValueError, match="unknown macro \\$\\{nope\\}"):
        sweep_command(["${nope}"], "train.py", {}, tmp_path / "a.json")


def test_sweep_command_expands_a_parameter_inside_a_word(tmp_path):
    command = sweep_command(
        ["${env}", "${interpreter}", "${program}", "--batch_size=${batch_size}", "--fixed", "1"],
        "train.py",
        {"batch_size": 64, "optimizer": {"lr": 0.1}},
        tmp_path / "args.json",
    )
    assert command[-3:] == ["--batch_size=64", "--fixed", "1"]
    nested = sweep_command(
        ["${program}", "--lr=${optimizer.lr}"],
        "t.py",
        {"optimizer": {"lr": 0.1}},
        tmp_path / "a.json",
    )
    assert nested == ["t.py", "--lr=0.1"]
