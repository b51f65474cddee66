"""A warm worker process does not keep each trial's TensorFlow graphs."""

from __future__ import annotations

import gc

import keras
import pytest

from ktsweep.worker.trial_runner import run_trial
from ktsweep.worker.trial_spec import TrialSpec

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="the graphs in question are TensorFlow's"
)


def digits_trial(tmp_path, number: int) -> TrialSpec:
    return TrialSpec(
        trial_id=f"memory-{number}",
        hyperparameters={"units": 32, "dropout": 0.1, "learning_rate": 0.003},
        hypermodel="ktsweep.examples.digits:build_model",
        data="ktsweep.examples.digits:load_data",
        fit={"epochs": 1, "batch_size": 64},
        wandb={"mode": "disabled"},
        checkpoint_dir=str(tmp_path / f"trial-{number}"),
    )


def live_training_graphs() -> int:
    from tensorflow.python.framework.func_graph import FuncGraph

    gc.collect()
    return sum(
        isinstance(obj, FuncGraph) and obj.name == "one_step_on_data" for obj in gc.get_objects()
    )


def test_trials_in_one_process_leave_no_training_graphs_behind(tmp_path):
    from tensorflow.python.framework import ops

    registry = ops._gradient_registry._registry
    run_trial(digits_trial(tmp_path, 0))
    graphs, registered = live_training_graphs(), len(registry)

    for number in range(1, 4):
        result = run_trial(digits_trial(tmp_path, number))
        assert result.state == "completed"

    # Without releasing them, each trial keeps its two traced training steps (and with them
    # its model) registered with TensorFlow for the life of the process.
    assert live_training_graphs() == graphs
    assert len(registry) == registered
