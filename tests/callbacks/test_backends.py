"""The callbacks tests pass on the PyTorch backend too (the main run uses TensorFlow)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(TESTS_DIR))


def run_callbacks_tests(backend: str, *pytest_args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KERAS_BACKEND": backend}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))
    command = [
        sys.executable,
        "-m",
        "pytest",
        TESTS_DIR,
        "-q",
        "-p",
        "no:cacheprovider",
        f"--ignore={os.path.join(TESTS_DIR, 'test_backends.py')}",
        # Backend-independent: it runs a script in its own process.
        "--deselect",
        f"{os.path.join(TESTS_DIR, 'test_wandb_callback.py')}::"
        "test_old_script_runs_unchanged_in_legacy_mode",
        *pytest_args,
    ]
    return subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=540
    )


@pytest.mark.skipif(
    importlib.util.find_spec("torch") is None,
    reason="torch isn't installed: `pip install torch==2.13.0` (CPU build) to test the "
    "PyTorch backend",
)
def test_callbacks_pass_on_the_pytorch_backend():
    result = run_callbacks_tests("torch")

    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout


def test_callbacks_package_never_imports_tensorflow():
    code = (
        "import sys, ktsweep.callbacks, ktsweep.callbacks.legacy; "
        "print('tensorflow' in sys.modules)"
    )
    env = {**os.environ, "KERAS_BACKEND": "torch" if importlib.util.find_spec("torch") else "jax"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))
    if importlib.util.find_spec(env["KERAS_BACKEND"]) is None:
        pytest.skip("needs torch or jax installed to load Keras without TensorFlow")
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "False"
