"""The contract of the W&B internals ktsweep relies on: ktsweep/callbacks/compat/wandb.py (batched
history, table references, `wandb.keras`) and ktsweep/worker/compat/wandb.py (`program` trials).
Each test uses real offline runs; a failure names what moved and the module to update."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import wandb

from ktsweep.callbacks.compat import wandb as callbacks_compat
from ktsweep.worker.compat import wandb as worker_compat

CALLBACKS = "ktsweep/callbacks/compat/wandb.py"
WORKER = "ktsweep/worker/compat/wandb.py"


def moved(what: str, module: str) -> str:
    return f"wandb {wandb.__version__} moved {what}; update {module}"


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """Starts offline runs whose files stay in tmp_path."""
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.chdir(tmp_path)
    yield lambda **settings: wandb.init(mode="offline", project="compat", **settings)
    if wandb.run is not None:
        wandb.run.finish()


def logged(run, count: int) -> list[dict]:
    """Finishes `run` and reads its rows back from its `.wandb` file (waits for `count`)."""
    path = Path(run.settings.sync_file)
    run.finish()
    deadline = time.monotonic() + 30
    rows = list(worker_compat.logged_rows(path.read_bytes()))
    while len(rows) < count and time.monotonic() < deadline:
        time.sleep(0.1)
        rows = list(worker_compat.logged_rows(path.read_bytes()))
    return rows


# The callbacks.


def test_rows_published_in_a_batch_are_history_rows_in_order(offline):
    run = offline()
    publisher = callbacks_compat.BatchPublisher.for_run(run)
    assert publisher is not None, moved(
        "the run's `_interface` (`_asyncer`, `_client`, `_assign`, `_publish`, "
        "`publish_partial_history`) or `Run._local_step`",
        CALLBACKS,
    )
    publisher.publish([{"a": 1}, {"a": 2}])
    run.log({"a": 3})
    assert logged(run, 3) == [{"a": 1}, {"a": 2}, {"a": 3}], moved(
        "how `publish_partial_history` records are published, or `Run._local_step`", CALLBACKS
    )


def test_a_finished_run_refuses_a_batch(offline):
    run = offline()
    publisher = callbacks_compat.BatchPublisher.for_run(run)
    run.finish()
    with pytest.raises(RuntimeError):
        publisher.publish([{"a": 1}])


def test_a_media_reference_points_at_the_logged_file(tmp_path):
    image = wandb.Image(np.zeros((4, 4, 3), dtype=np.uint8))
    source = wandb.Artifact("source", type="eval")
    source.add(wandb.Table(columns=["image"], data=[[image]]), "table")
    assert isinstance(image, wandb.data_types.Media) and image.file_is_set()
    path = callbacks_compat.media_file_path(image)
    entry_name = source.get_added_local_path_name(path)
    client_id = callbacks_compat.artifact_client_id(source)
    assert isinstance(entry_name, str) and isinstance(client_id, str), moved(
        "Media._path or Artifact._client_id", CALLBACKS
    )
    reference = callbacks_compat.media_referencing(image, client_id, entry_name)
    target = wandb.Artifact("target", type="eval")
    target.add(wandb.Table(columns=["image"], data=[[reference]]), "pred")
    url = f"wandb-client-artifact://{client_id}/{entry_name}"
    references = [entry.ref for entry in target.manifest.entries.values() if entry.ref]
    assert references == [url], moved(
        "Media._set_artifact_source / _artifact_source, or how Media.to_json adds a reference "
        "to its source artifact's entry",
        CALLBACKS,
    )


def test_wandb_keras_imports_the_module_set_until_it_is_unset():
    module = importlib.util.module_from_spec(importlib.machinery.ModuleSpec("wandb.keras", None))
    module.marker = True
    callbacks_compat.set_wandb_keras(module)
    try:
        from wandb.keras import marker  # noqa: F401
    finally:
        callbacks_compat.set_wandb_keras(None)
    with pytest.raises(ImportError):
        importlib.import_module("wandb.keras")


# The worker's `program` trials.


def test_the_hook_sees_every_log_of_a_run(offline):
    original = wandb.Run.log
    seen = []
    try:
        worker_compat.after_each_log(lambda data: seen.append(dict(data)))
        run = offline()
        wandb.log({"loss": 0.5})
        run.log({"loss": 0.25})
    finally:
        wandb.Run.log = original
    assert seen == [{"loss": 0.5}, {"loss": 0.25}], moved(
        "wandb.Run.log (which `wandb.log` and `run.log` call)", WORKER
    )


def test_a_sweep_param_file_becomes_the_config_of_the_scripts_run(tmp_path):
    path = tmp_path / "config.yaml"
    worker_compat.write_sweep_param_file(path, {"lr": 0.1, "layers": [32, 16]})
    # In a process of its own, as the script of a `program` trial: W&B reads it at setup.
    script = (
        "import json, wandb\n"
        "run = wandb.init(mode='offline', project='compat')\n"
        "print(json.dumps({key: run.config.get(key) for key in ('lr', 'layers')}))\n"
        "run.finish()\n"
    )
    environment = {**os.environ, "WANDB_SWEEP_PARAM_PATH": str(path), "WANDB_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    config = json.loads(done.stdout.strip().splitlines()[-1])
    assert config == {"lr": 0.1, "layers": [32, 16]}, moved(
        "wandb.sdk.lib.config_util.save_config_file_from_dict (the WANDB_SWEEP_PARAM_PATH file)",
        WORKER,
    )


def test_the_sweep_argument_macros_are_the_agents():
    macros = worker_compat.sweep_argument_macros({"lr": 0.1, "deep": True})
    expected = {"args", "args_no_hyphens", "args_no_boolean_flags", "args_json"}
    assert expected <= set(macros), moved(
        "wandb.sdk.launch.sweeps.utils.create_sweep_command_args", WORKER
    )
    assert macros["args"] == ["--lr=0.1", "--deep=True"], moved(
        "wandb.sdk.launch.sweeps.utils.create_sweep_command_args", WORKER
    )


def test_the_sweep_command_expands_environment_macros(monkeypatch):
    monkeypatch.setenv("KTSWEEP_COMPAT_VALUE", "expanded")
    command = ["${env}", "${interpreter}", "${program}", "--x=${envvar:KTSWEEP_COMPAT_VALUE}"]
    template = worker_compat.sweep_command_template(list(command))
    assert template == [*command[:3], "--x=expanded"], moved(
        "wandb.sdk.launch.sweeps.utils.create_sweep_command", WORKER
    )


def test_a_runs_history_is_read_from_its_transaction_log(offline):
    run = offline()
    run.log({"loss": 0.5, "nested": {"acc": 0.75}})
    run.log({"loss": 0.25})
    rows = logged(run, 2)
    assert rows == [{"loss": 0.5, "nested/acc": 0.75}, {"loss": 0.25}], moved(
        "the `.wandb` file's framing or wandb.proto.wandb_internal_pb2.Record's history items",
        WORKER,
    )
