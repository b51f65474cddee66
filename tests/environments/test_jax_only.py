"""ktsweep installed with `ktsweep[jax]` and no TensorFlow at all (CI's JAX-only environment).

    pip install -c constraints.txt -e ".[jax]" pytest pytest-timeout
    KTSWEEP_TEST_ENV=jax-only pytest tests/environments/test_jax_only.py

The main environment has TensorFlow, so there these tests skip.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "digits" / "sweep.yaml"

pytestmark = pytest.mark.skipif(
    os.environ.get("KTSWEEP_TEST_ENV") != "jax-only",
    reason="for the JAX-only environment: install `.[jax]` alone and set "
    "KTSWEEP_TEST_ENV=jax-only (.ci/run does)",
)


def user_env(**extra: str) -> dict[str, str]:
    """A user's shell: W&B offline, no backend chosen, no checkout on the path."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "COLUMNS": "200"}
    for name in ("KERAS_BACKEND", "PYTHONPATH", "KTSWEEP_DATABASE_URL"):
        env.pop(name, None)
    env.update(extra)
    return env


def run(command: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=cwd, env=user_env(**env), capture_output=True, text=True, timeout=900
    )


def test_tensorflow_cannot_be_imported():
    assert importlib.util.find_spec("tensorflow") is None
    with pytest.raises(ImportError):
        import tensorflow  # noqa: F401


def test_ktsweep_run_trains_the_digits_example_on_jax(tmp_path):
    """No KERAS_BACKEND: ktsweep picks JAX, the one installed, for itself and its workers."""
    spec = yaml.safe_load(EXAMPLE.read_text())
    spec.update(run_cap=2, parallelism=2)
    spec["trial"]["fit"]["epochs"] = 2
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(spec))

    done = run(["ktsweep", "run", "sweep.yaml"], tmp_path)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "digits-mlp - finished" in done.stdout
    assert "Best trial" in done.stdout and "wandb sync" in done.stdout


def test_a_configured_backend_that_is_missing_names_the_extra_to_install(tmp_path):
    done = run(["ktsweep", "run", str(EXAMPLE)], tmp_path, KERAS_BACKEND="tensorflow")

    assert done.returncode == 2
    output = done.stdout + done.stderr
    assert "pip install 'ktsweep[tensorflow]'" in output
    assert "Traceback" not in output
    assert not (tmp_path / "ktsweep.db").exists()


DISTRIBUTE = """
import json
import keras, keras_tuner as kt
from ktsweep import distribute
from ktsweep.examples.digits import build_model, load_data

data = load_data()
tuner = kt.RandomSearch(build_model, objective="val_accuracy", max_trials=2, seed=2,
                        directory="tuning", project_name="jax")
distribute(tuner, parallel_trials=2, wandb={"project": "jax", "mode": "offline"})
tuner.search(data["x"], data["y"], epochs=1, validation_data=data["validation_data"], verbose=0)
best = tuner.get_best_models(1)[0]
print(json.dumps({
    "backend": keras.backend.backend(),
    "states": [t.status for t in tuner.oracle.trials.values()],
    "accuracy": best.evaluate(*data["validation_data"], verbose=0, return_dict=True)["accuracy"],
}))
"""


def test_distribute_runs_a_random_search_on_jax(tmp_path):
    (tmp_path / "tune.py").write_text(DISTRIBUTE)

    done = run([sys.executable, "tune.py"], tmp_path, KERAS_BACKEND="jax")

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["backend"] == "jax"
    assert result["states"] == ["COMPLETED", "COMPLETED"]
    assert result["accuracy"] > 0.3


CALLBACKS = """
import json, pathlib
import keras
import wandb
from ktsweep.callbacks import MetricsLogger, ModelCheckpoint
from ktsweep.examples.digits import build_model, load_data
import keras_tuner as kt

data = load_data()
run = wandb.init(project="jax", mode="offline")
model = build_model(kt.HyperParameters())
model.fit(data["x"], data["y"], epochs=2, validation_data=data["validation_data"], verbose=0,
          callbacks=[MetricsLogger(), ModelCheckpoint("best.keras", monitor="val_loss")])
summary = dict(run.summary)
run.finish()
print(json.dumps({
    "backend": keras.backend.backend(),
    "summary": sorted(summary),
    "epochs": summary.get("epoch/epoch"),
    "checkpoint": pathlib.Path("best.keras").is_file(),
    "run_file": [str(p) for p in pathlib.Path(run.dir).parent.glob("run-*.wandb")],
}))
"""


def test_metrics_logger_and_model_checkpoint_log_to_an_offline_run_on_jax(tmp_path):
    (tmp_path / "train.py").write_text(CALLBACKS)

    done = run([sys.executable, "train.py"], tmp_path, KERAS_BACKEND="jax")

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["backend"] == "jax"
    assert "epoch/val_loss" in result["summary"] and "epoch/accuracy" in result["summary"]
    assert result["checkpoint"]
    assert result["run_file"], "no offline run file was written"
