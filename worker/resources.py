"""What a trial's `resources` mean on Ray, and how a trial keeps to its share of a GPU.

`ray_options` turns `{"cpu": 1, "gpu": 0.25}` (a sweep spec's `trial.resources`, or
`distribute(resources_per_trial=...)`) into Ray task options. A fractional GPU lets several trials
share one GPU; each is then told, through environment variables set before its process starts
and `limit_gpu_memory` once it runs, to take only its share of the GPU's memory, whichever Keras
backend it uses (TensorFlow, JAX or PyTorch).
"""

from __future__ import annotations

import logging
import os
import subprocess
from typing import Any

log = logging.getLogger(__name__)

RESOURCE_NAMES = ("cpu", "gpu", "tpu", "memory")
GPU_SHARE_ENV = "KTSWEEP_GPU_MEMORY_FRACTION"
# Of a trial's share, what its framework may take; the rest is the CUDA context's overhead.
_USABLE_SHARE = 0.9
# CPU trials reuse a warm worker process for this many trials, which bounds memory growth: a
# digits trial with its offline W&B run and checkpoint leaves about 0.7 MB behind in its process
# (once TensorFlow's custom-gradient registrations are released after each trial; before, 5 MB),
# so 256 trials grow it by under 200 MB, while each new process costs seconds of imports (4-8 s
# on a small machine) that short trials would otherwise pay every few trials.
# `KTSWEEP_CPU_TRIALS_PER_PROCESS` overrides.
CPU_TRIALS_PER_PROCESS = 256


def check_resources(resources: dict[str, Any] | None) -> dict[str, Any]:
    """Validate a trial's `resources`; returns them, raising ValueError that says what to fix."""
    resources = dict(resources or {})
    unknown = sorted(set(resources) - set(RESOURCE_NAMES))
    if unknown:
        raise ValueError(
            f"unknown trial resources {unknown}; use 'cpu', 'gpu', 'tpu' (chips per trial) "
            "and 'memory' (bytes), e.g. {'cpu': 1, 'gpu': 0.25}."
        )
    for name, value in resources.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"trial resource '{name}' must be a number >= 0; received {value!r}.")
    gpu = resources.get("gpu", 0)
    if gpu > 1 and gpu != int(gpu):
        raise ValueError(
            f"'gpu': {gpu} asks for part of a GPU beyond whole ones; ask for a whole number "
            "of GPUs, or a fraction of one (e.g. 0.25 packs 4 trials on each GPU)."
        )
    return resources


def ray_options(
    resources: dict[str, Any] | None, fresh_process: bool | None = None
) -> dict[str, Any]:
    """Ray task options for a trial's `resources` (`cpu`, `gpu`, `tpu`, `memory`).

    A fractional `gpu` adds the environment that keeps the trial to its share of GPU memory.
    Ray takes `max_calls` only in `ray.remote`, so it is a separate option: see `max_calls`.

    Args:
        resources: The trial's resources; default one CPU.
        fresh_process: Unused here; accepted so both functions take the same arguments.
    """
    resources = check_resources(resources)
    gpu = resources.get("gpu", 0)
    tpu = resources.get("tpu", 0)
    options: dict[str, Any] = {"num_cpus": resources.get("cpu", 1), "num_gpus": gpu}
    if tpu:
        options["resources"] = {"TPU": tpu}
    if resources.get("memory"):
        options["memory"] = resources["memory"]
    env = gpu_share_env(gpu)
    if env:
        options["runtime_env"] = {"env_vars": env}
    return options


def max_calls(resources: dict[str, Any] | None, fresh_process: bool | None = None) -> int:
    """How many trials one Ray worker process runs before it exits (Ray's `max_calls`).

    GPU and TPU trials run in a fresh process each (1): the process exits with the trial, so
    accelerator memory goes back and nothing grows from trial to trial. CPU trials reuse a warm
    process (Keras is imported once) for up to `CPU_TRIALS_PER_PROCESS` trials.

    Args:
        resources: The trial's resources.
        fresh_process: True: every trial in a new process; False: reuse warm processes even
            for accelerator trials; None (default): fresh for GPU and TPU trials only.
    """
    resources = resources or {}
    if fresh_process is None:
        fresh_process = bool(resources.get("gpu") or resources.get("tpu"))
    if fresh_process:
        return 1
    configured = os.environ.get("KTSWEEP_CPU_TRIALS_PER_PROCESS", "")
    try:
        return max(1, int(configured)) if configured else CPU_TRIALS_PER_PROCESS
    except ValueError:
        raise ValueError(
            "KTSWEEP_CPU_TRIALS_PER_PROCESS must be a whole number of trials (1: a fresh process "
            f"for every trial); received {configured!r}."
        ) from None


def gpu_share_env(gpu: float) -> dict[str, str]:
    """Environment that keeps each framework of a process to `gpu` (a fraction) of a GPU.

    JAX: no preallocation and a memory fraction; TensorFlow: memory growth (the hard limit is
    set by `limit_gpu_memory`); PyTorch: read by `limit_gpu_memory`. Empty for whole GPUs.
    """
    if not 0 < gpu < 1:
        return {}
    share = gpu * _USABLE_SHARE
    return {
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
        "XLA_PYTHON_CLIENT_MEM_FRACTION": f"{share:.3f}",
        "TF_FORCE_GPU_ALLOW_GROWTH": "true",
        GPU_SHARE_ENV: f"{share:.3f}",
    }


def limit_gpu_memory() -> None:
    """In a trial's process, cap TensorFlow and PyTorch at the process's share of its GPU, and
    TensorFlow's CPU thread pools at the trial's CPUs.

    Runs before the trial's first operation; does nothing without a share or without a GPU.
    """
    _limit_cpu_threads()
    share = os.environ.get(GPU_SHARE_ENV)
    if not share:
        return
    share = float(share)
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend == "tensorflow":
        _limit_tensorflow(share)
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.set_per_process_memory_fraction(share)


def _limit_cpu_threads() -> None:
    """Size TensorFlow's thread pools to the CPUs Ray gave the trial (Ray sets OMP_NUM_THREADS
    to them), so trials packed on a machine do not oversubscribe its cores."""
    threads = os.environ.get("OMP_NUM_THREADS")
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow" or not threads:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(max(1, int(float(threads))))
        tf.config.threading.set_inter_op_parallelism_threads(max(1, int(float(threads))))
    except (RuntimeError, ValueError):
        pass  # TensorFlow already started in this (reused) process: its pools stay as they are


def _limit_tensorflow(share: float) -> None:
    import tensorflow as tf

    total_mb = _gpu_total_memory_mb()
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            if total_mb:
                limit = tf.config.LogicalDeviceConfiguration(memory_limit=int(total_mb * share))
                tf.config.set_logical_device_configuration(gpu, [limit])
            else:
                tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError as exc:  # the GPU was initialised already: growth still applies
            log.warning("could not cap TensorFlow's GPU memory: %s", exc)


def _gpu_total_memory_mb() -> int | None:
    try:
        output = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        return int(output.split()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
