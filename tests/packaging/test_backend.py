"""With no Keras backend installed, `ktsweep run` and `distribute` name the extra to install
in one line, with an exit code and no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Makes this interpreter behave as one where TensorFlow, JAX and PyTorch were never installed.
HIDE_BACKENDS = """
import sys

class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "jax", "jaxlib", "torch"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
"""


def run_without_backends(tmp_path: Path, *command: str) -> subprocess.CompletedProcess:
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(HIDE_BACKENDS)
    env = {**os.environ, "PYTHONPATH": str(hide), "HOME": str(tmp_path), "COLUMNS": "200"}
    env.pop("KERAS_BACKEND", None)
    return subprocess.run(
        [sys.executable, *command], cwd=tmp_path, env=env, capture_output=True, text=True
    )


def test_ktsweep_run_without_a_backend_names_the_extras(tmp_path):
    spec = REPO / "examples" / "digits" / "sweep.yaml"

    done = run_without_backends(tmp_path, "-m", "ktsweep.service.cli", "run", str(spec))

    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "No Keras backend is installed: pip install 'ktsweep[tensorflow]'" in output
    assert "'ktsweep[jax]'" in output and "'ktsweep[torch]'" in output
    assert "Traceback" not in output
    assert not (tmp_path / "ktsweep.db").exists()


def test_distribute_without_a_backend_names_the_extras(tmp_path):
    done = run_without_backends(tmp_path, "-c", "from ktsweep import distribute")

    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert output.strip().splitlines() == [
        "ktsweep: No Keras backend is installed: pip install 'ktsweep[tensorflow]' (or "
        "'ktsweep[jax]', 'ktsweep[torch]'), or install TensorFlow, JAX or PyTorch yourself."
    ]


def test_keras_json_names_the_backend_that_is_missing(tmp_path):
    (tmp_path / ".keras").mkdir()
    (tmp_path / ".keras" / "keras.json").write_text('{"backend": "jax"}')

    done = run_without_backends(tmp_path, "-c", "from ktsweep import distribute")

    assert done.returncode == 1
    assert "pip install 'ktsweep[jax]'" in done.stderr
