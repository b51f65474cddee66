"""Every module loads once, under `ktsweep.`: nothing under a bare `service`, `worker`,
`callbacks` or `examples` name (which a user's own `callbacks.py` could shadow)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BARE = ("service", "worker", "callbacks", "examples")

IMPORT_EVERYTHING = """
import importlib, pkgutil, sys
names = []
for package in sys.argv[1].split(","):
    names.append(package)
    module = importlib.import_module(package)
    for info in pkgutil.iter_modules(module.__path__, package + "."):
        if not info.ispkg and ".migrations." not in info.name:  # Alembic runs those
            importlib.import_module(info.name)
            names.append(info.name)
print(len(names))
print(",".join(sorted({m.split(".")[0] for m in sys.modules})))
"""


def test_importing_every_module_loads_no_bare_layer_name(tmp_path):
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = packages["packages"]
    env = {**os.environ, "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "tensorflow")}
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERYTHING, ",".join(packages)],
        cwd=tmp_path,  # not the repository: the installed package alone
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    count, top_level = done.stdout.strip().splitlines()[-2:]
    assert int(count) > 40
    assert not set(top_level.split(",")) & set(BARE)


def test_ruff_bans_the_bare_layer_names():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    assert "TID" in config["select"]
    assert set(BARE) <= set(config["flake8-tidy-imports"]["banned-api"])
    bad = "import callbacks\nfrom service.app import create_app\nimport worker.ray_runner\n"
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--select", "TID251", "--stdin-filename", "x.py"],
        input=bad,
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert done.stdout.count("TID251") == 3, done.stdout
