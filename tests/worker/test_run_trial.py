"""One trial in this process: real Keras fit on digits, a real offline W&B run, a spy reporter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ktsweep.worker import (
    TrialSpec,
    hyperparameters_for,
    resolve_entry_point,
    run_trial,
    run_trial_safely,
)
from ktsweep.worker.entry_points import EntryPointError


class SpyReporter:
    """Records every report and answers "stop" from `stop_at` on."""

    def __init__(self, stop_at: int | None = None):
        self.reports: list[tuple[int, dict]] = []
        self.stop_at = stop_at

    def report(self, step, metrics, checkpoint=None):
        self.reports.append((step, metrics))
        return "stop" if self.stop_at is not None and step >= self.stop_at else "continue"


def digits_trial(tmp_path: Path, **changes) -> TrialSpec:
    spec = TrialSpec(
        trial_id="t-0",
        sweep_id="s",
        hyperparameters={"units": 32, "dropout": 0.1, "learning_rate": 0.01},
        hypermodel="ktsweep.examples.digits:build_model",
        data="ktsweep.examples.digits:load_data",
        fit={"epochs": 3, "batch_size": 64},
        metric="val_accuracy",
        wandb={"project": "tests", "mode": "offline", "dir": str(tmp_path)},
        callbacks={"metrics_logger": {"log_freq": "epoch"}},
        checkpoint_dir=str(tmp_path / "checkpoints"),
    )
    for name, value in changes.items():
        setattr(spec, name, value)
    return spec


def test_trial_reports_every_epoch_and_returns_final_metrics(tmp_path):
    spy = SpyReporter()
    result = run_trial(digits_trial(tmp_path), reporter=spy)
    assert result.state == "completed"
    assert [step for step, _ in spy.reports] == [1, 2, 3]
    assert set(spy.reports[0][1]) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert result.metrics.items() >= spy.reports[-1][1].items()
    assert result.epochs == 3 and len(result.history) == 3


def wandb_summary(run_dir: Path) -> dict:
    """The summary an offline run wrote to its transaction log (`run-*.wandb`), as W&B reads
    it on `wandb sync`, once W&B's service has written the log to its end; the last update of
    each key wins."""
    from wandb.proto import wandb_internal_pb2

    from tests.callbacks.conftest import _read_finished_log

    summary = {}
    for raw in _read_finished_log(str(next(run_dir.glob("run-*.wandb")))):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "summary":
            for item in record.summary.update:
                key = item.key or "/".join(item.nested_key)
                summary[key] = json.loads(item.value_json)
    return summary


def test_trial_records_its_parameter_count_and_fit_time(tmp_path):
    small = run_trial(digits_trial(tmp_path, hyperparameters={"units": 16}), SpyReporter())
    large = run_trial(digits_trial(tmp_path, hyperparameters={"units": 64}), SpyReporter())
    # The digits MLP: 64 inputs -> units -> 10 classes, each layer with its biases.
    assert small.metrics["model/parameters"] == 64 * 16 + 16 + 16 * 10 + 10
    assert large.metrics["model/parameters"] == 64 * 64 + 64 + 64 * 10 + 10
    assert small.metrics["model/fit_time_s"] > 0
    assert {"val_accuracy", "loss"} <= set(small.metrics)


def test_run_summary_carries_the_cost_and_the_objectives(tmp_path):
    trial = digits_trial(tmp_path, objectives=["val_accuracy", "model/parameters"])
    result = run_trial(trial, reporter=SpyReporter())
    summary = wandb_summary(Path(result.wandb["run_dir"]))
    assert summary["model/parameters"] == result.metrics["model/parameters"]
    assert summary["model/fit_time_s"] == result.metrics["model/fit_time_s"]
    assert summary["objectives"] == {
        "val_accuracy": result.metrics["val_accuracy"],
        "model/parameters": result.metrics["model/parameters"],
    }


def test_offline_trial_links_its_run_folder_and_sync_command(tmp_path):
    result = run_trial(digits_trial(tmp_path), reporter=SpyReporter())
    link = result.wandb
    assert link["url"] is None and link["mode"] == "offline"
    run_dir = Path(link["run_dir"])
    assert run_dir.is_dir() and run_dir.is_relative_to(tmp_path)
    assert any(run_dir.glob("run-*.wandb"))
    assert link["sync_command"] == f"wandb sync {run_dir}"


def test_controller_stop_ends_training_early(tmp_path):
    spy = SpyReporter(stop_at=2)
    result = run_trial(digits_trial(tmp_path, fit={"epochs": 5}), reporter=spy)
    assert result.state == "stopped"
    assert result.epochs == 2


def test_checkpoint_written_and_reported(tmp_path):
    callbacks = {"checkpoint": {"monitor": "val_loss", "save_best_only": False}}
    result = run_trial(digits_trial(tmp_path, callbacks=callbacks), reporter=SpyReporter())
    assert result.checkpoint is not None
    assert Path(result.checkpoint).is_file()
    assert Path(result.checkpoint).is_relative_to(tmp_path / "checkpoints")


def test_hyperparameters_reach_the_model(tmp_path):
    build = resolve_entry_point("ktsweep.examples.digits:build_model")
    model = build(hyperparameters_for({"units": 48, "dropout": 0.2, "learning_rate": 0.005}))
    assert model.layers[0].units == 48
    assert model.layers[1].rate == pytest.approx(0.2)


def test_nested_config_answers_scoped_hyperparameter_names():
    hp = hyperparameters_for({"optimizer": {"lr": 0.1}, "units": 8})
    assert hp.Float("optimizer/lr", 1e-4, 1.0) == 0.1
    assert hp.Int("units", 1, 100) == 8


def test_missing_module_fails_the_trial_with_the_import_error(tmp_path):
    spec = digits_trial(tmp_path, hypermodel="no_such_package.models:build")
    result = run_trial_safely(spec, reporter=SpyReporter())
    assert result.state == "failed"
    assert "cannot import module 'no_such_package.models'" in result.error


def test_entry_point_without_function_is_explained():
    with pytest.raises(EntryPointError, match="package.module:function"):
        resolve_entry_point("ktsweep.examples.digits")
    with pytest.raises(EntryPointError, match="has no attribute 'nope'"):
        resolve_entry_point("ktsweep.examples.digits:nope")
