"""Trial resources as Ray options: CPU, fractional GPU with memory shares, TPU."""

from __future__ import annotations

import pytest

from ktsweep.worker import ray_options
from ktsweep.worker.resources import CPU_TRIALS_PER_PROCESS, max_calls


def test_cpu_trials_reuse_warm_processes():
    assert ray_options({"cpu": 2}) == {"num_cpus": 2, "num_gpus": 0}
    assert max_calls({"cpu": 2}) == CPU_TRIALS_PER_PROCESS
    assert max_calls({"cpu": 2}, fresh_process=True) == 1


def test_operators_set_how_many_cpu_trials_a_process_runs(monkeypatch):
    monkeypatch.setenv("KTSWEEP_CPU_TRIALS_PER_PROCESS", "8")
    assert max_calls({"cpu": 1}) == 8
    assert max_calls({"gpu": 1}) == 1
    monkeypatch.setenv("KTSWEEP_CPU_TRIALS_PER_PROCESS", "many")
    with pytest.raises(ValueError, match="KTSWEEP_CPU_TRIALS_PER_PROCESS"):
        max_calls({"cpu": 1})


def test_a_gpu_share_limits_each_framework_to_its_share_of_memory():
    options = ray_options({"cpu": 1, "gpu": 0.25})
    assert options["num_gpus"] == 0.25
    env = options["runtime_env"]["env_vars"]
    assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert 0 < float(env["XLA_PYTHON_CLIENT_MEM_FRACTION"]) < 0.25
    assert env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    assert env["KTSWEEP_GPU_MEMORY_FRACTION"] == env["XLA_PYTHON_CLIENT_MEM_FRACTION"]
    assert max_calls({"gpu": 0.25}) == 1


def test_whole_gpus_and_tpus_run_in_fresh_processes_without_memory_shares():
    assert "runtime_env" not in ray_options({"gpu": 1})
    tpu = ray_options({"tpu": 4})
    assert tpu["resources"] == {"TPU": 4}
    assert max_calls({"tpu": 4}) == 1


@pytest.mark.parametrize(
    "resources, message",
    [
        ({"gpus": 1}, "unknown trial resources \\['gpus'\\]"),
        ({"cpu": -1}, "'cpu' must be a number >= 0"),
        ({"gpu": 1.5}, "ask for a whole number of GPUs"),
    ],
)
def test_bad_resources_say_what_to_fix(resources, message):
    with pytest.raises(ValueError, match=message):
        ray_options(resources)
