"""The README's Keras Tuner example runs as a user runs it: a script, a fresh process, real Ray."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "examples" / "keras_tuner" / "tune_digits.py"


def test_keras_tuner_script_runs_its_trials_on_ray_with_wandb_runs(tmp_path):
    env = {**os.environ, "WANDB_SILENT": "true", "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("RAY_ADDRESS", None)
    args = ["--trials", "3", "--epochs", "2", "--parallel", "2", "--wandb-mode", "offline"]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    accuracy = re.search(r"best model's val_accuracy: ([0-9.]+)", done.stdout)
    assert accuracy, done.stdout[-2000:]
    assert float(accuracy.group(1)) > 0.3
    assert "Showing 3 best trials" in done.stdout
    trial_dirs = sorted((tmp_path / "kt-digits" / "random").glob("trial_*"))
    assert len(trial_dirs) == 3
    assert all((trial / "checkpoint.weights.h5").is_file() for trial in trial_dirs)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 3, runs  # one W&B run per trial
