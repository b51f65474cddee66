"""ktsweep in a user's own project folder, which has its own `callbacks.py`, `worker.py`,
`service.py` and `examples/`: the driver and its Ray workers (whose `sys.path` holds that
folder) import ktsweep's modules, never the user's files of the same names."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SHADOW = 'raise RuntimeError("ktsweep imported the project\'s own {name}")\n'

SCRIPT = """
import json, os, sys
import keras
import keras_tuner as kt
import wandb
from sklearn.datasets import load_digits

import callbacks as project_callbacks  # the project's own module keeps its name

from ktsweep import distribute
from ktsweep.callbacks import MetricsLogger, ModelCheckpoint

x, y = load_digits(return_X_y=True)
x = (x / 16.0).astype("float32")
data = dict(x=x[:1200], y=y[:1200], validation_data=(x[1200:], y[1200:]))


def build_model(hp):
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(hp.Choice("units", [8, 16]), activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


tuner = kt.RandomSearch(build_model, objective="val_accuracy", max_trials=2, seed=1,
                        directory="tuning", project_name="shadowed")
distribute(tuner, parallel_trials=2, wandb={"project": "shadowed", "mode": "offline"})
tuner.search(data["x"], data["y"], epochs=1, validation_data=data["validation_data"], verbose=0)
trials = tuner.oracle.get_best_trials(2)

run = wandb.init(project="shadowed", mode="offline")
model = build_model(kt.HyperParameters())
model.fit(data["x"], data["y"], epochs=2, validation_data=data["validation_data"], verbose=0,
          callbacks=[MetricsLogger(), ModelCheckpoint("model.keras", monitor="val_loss")])
run.finish()
print(json.dumps({
    "project_callbacks": project_callbacks.MARK,
    "trial_states": [t.status for t in trials],
    "trial_scores": [t.score for t in trials],
    "checkpoint": os.path.isfile("model.keras"),
    "run_dir": run.dir,
    "distribute_from": sys.modules["ktsweep.worker.distributed_search"].__file__,
}))
"""


def test_distribute_and_callbacks_run_from_a_folder_with_same_named_files(tmp_path):
    (tmp_path / "callbacks.py").write_text('MARK = "the project\'s callbacks.py"\n')
    for name in ("worker.py", "service.py"):
        (tmp_path / name).write_text(SHADOW.format(name=name))
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "__init__.py").write_text(SHADOW.format(name="examples/"))
    (tmp_path / "train.py").write_text(SCRIPT)
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env.pop("PYTHONPATH", None)  # what a user's shell has: no ktsweep checkout on the path
    done = subprocess.run(
        [sys.executable, "train.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    import json

    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["project_callbacks"] == "the project's callbacks.py"
    assert result["trial_states"] == ["COMPLETED", "COMPLETED"]
    assert all(score is not None for score in result["trial_scores"])
    assert result["checkpoint"]
    assert Path(result["run_dir"]).is_relative_to(tmp_path / "wandb")
    assert not Path(result["distribute_from"]).is_relative_to(tmp_path)
