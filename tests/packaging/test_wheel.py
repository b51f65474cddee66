"""The wheel a user installs: one top-level package, ranges instead of pins, no backend."""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
TENSORFLOW_DISTRIBUTIONS = {"tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tf-nightly"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    # A copy of what the wheel is built from: setuptools' `build/` in a checkout may hold
    # modules removed since, which would end up in the wheel.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for folder in ("ktsweep", "service", "worker", "callbacks", "examples"):
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(REPO / folder, source / folder, ignore=ignore)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(source)],
        check=True,
        timeout=600,
    )
    (path,) = out.glob("ktsweep-*.whl")
    with zipfile.ZipFile(path) as archive:
        yield archive


def metadata(wheel: zipfile.ZipFile) -> email.message.Message:
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    return email.message_from_bytes(wheel.read(name))


def test_wheel_holds_exactly_one_top_level_package_ktsweep(wheel):
    top = {name.split("/", 1)[0] for name in wheel.namelist()}
    top = {name for name in top if not name.endswith((".dist-info", ".data"))}
    assert top == {"ktsweep"}


def test_wheel_holds_every_package_folder_of_the_repository(wheel):
    names = set(wheel.namelist())
    layers = {"service": "ktsweep/service", "worker": "ktsweep/worker"}
    layers |= {"callbacks": "ktsweep/callbacks", "examples": "ktsweep/examples"}
    for folder, package in layers.items():
        for init in (REPO / folder).rglob("__init__.py"):
            inside = init.relative_to(REPO / folder).as_posix()
            assert f"{package}/{inside}" in names, f"{folder}/{inside} is not in the wheel"
    assert "ktsweep/service/migrations/script.py.mako" in names
    assert "ktsweep/service/web/static/index.html" in names
    assert "ktsweep/examples/digits/sweep.yaml" in names


def test_requirements_are_ranges_and_no_tensorflow_outside_an_extra(wheel):
    requirements = [Requirement(r) for r in metadata(wheel).get_all("Requires-Dist")]
    pinned = [str(r) for r in requirements if any(s.operator in ("==", "===") for s in r.specifier)]
    assert pinned == [], f"exact pins in Requires-Dist: {pinned}"
    base = [r for r in requirements if r.marker is None or "extra" not in str(r.marker)]
    base_names = {r.name.lower() for r in base}
    assert not base_names & TENSORFLOW_DISTRIBUTIONS, base_names & TENSORFLOW_DISTRIBUTIONS
    assert not base_names & {"jax", "jaxlib", "torch"}
    assert {"keras", "keras-tuner", "wandb", "ray", "optuna"} <= base_names


def test_each_backend_is_an_extra(wheel):
    extras = set(metadata(wheel).get_all("Provides-Extra"))
    assert {"tensorflow", "tensorflow-cpu", "jax", "torch"} <= extras


def test_entry_point_is_ktsweep(wheel):
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    assert "ktsweep = ktsweep.service.cli:app" in wheel.read(name).decode()
