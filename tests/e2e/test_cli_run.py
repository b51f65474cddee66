"""`ktsweep run`: the embedded sweep a new user runs first (README command 1)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "digits" / "sweep.yaml"


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("KTSWEEP_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "ktsweep.service.cli", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_run_prints_live_table_and_best_trial_with_wandb_link(tmp_path):
    spec = yaml.safe_load(EXAMPLE.read_text())
    spec.update(run_cap=2)
    spec["trial"]["fit"]["epochs"] = 2
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(spec))
    done = run_cli(tmp_path, "run", "sweep.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "digits-mlp - finished" in done.stdout
    assert "Best trial" in done.stdout
    sync_line = next(line for line in done.stdout.splitlines() if "wandb sync" in line)
    run_dir = Path(sync_line.split("wandb sync ", 1)[1].strip())
    assert run_dir.is_dir() and run_dir.is_relative_to(tmp_path / "ktsweep-artifacts")
    assert (tmp_path / "ktsweep.db").is_file()


def test_run_refuses_a_bad_spec_with_its_path(tmp_path):
    spec = yaml.safe_load(EXAMPLE.read_text())
    spec["parameters"]["dropout"] = {"min": 0.9, "max": 0.1}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(spec))
    done = run_cli(tmp_path, "run", "bad.yaml")
    assert done.returncode == 2
    assert "parameters.dropout.min" in done.stdout
    assert not (tmp_path / "ktsweep.db").exists()
