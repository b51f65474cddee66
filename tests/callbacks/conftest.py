"""Fixtures for the callbacks tests: digits data, small models, real offline W&B runs.

W&B runs here are real offline runs written under pytest's tmp_path. What a
callback logged is checked in two ways: a spy on the run that records each call
and passes it through, and the run's own transaction log (the `.wandb` file that
`wandb sync` uploads), read back after the run finishes.
"""

from __future__ import annotations

import collections
import json
import os
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import pytest
import wandb
from google.protobuf.message import DecodeError
from sklearn.datasets import load_digits
from wandb.proto import wandb_internal_pb2

_BLOCK_SIZE = 32768
_HEADER_SIZE = 7


@dataclass
class Digits:
    x: np.ndarray
    y: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


@pytest.fixture(scope="session")
def digits() -> Digits:
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    y = y.astype("int32")
    return Digits(x=x[:1400], y=y[:1400], x_val=x[1400:], y_val=y[1400:])


@pytest.fixture
def make_model():
    """Returns a factory for a small compiled MLP on digits."""

    def make(learning_rate: Any = 0.01, units: int = 16) -> keras.Model:
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [
                keras.Input((64,)),
                keras.layers.Dense(units, activation="relu"),
                keras.layers.Dense(10, activation="softmax"),
            ]
        )
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return model

    return make


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    """Keeps every W&B file of a test in its tmp_path."""
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    if wandb.run is not None:
        wandb.run.finish()


@pytest.fixture
def offline_run(wandb_env):
    """A real offline W&B run, finished after the test."""
    run = wandb.init(mode="offline", project="callbacks-tests", dir=str(wandb_env))
    yield run
    run.finish()


class RunSpy:
    """Records the calls made on a run and passes each one through to the real run."""

    METHODS = ("log", "log_artifact", "define_metric", "use_artifact")

    def __init__(self, run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: dict[str, list[tuple[tuple, dict]]] = collections.defaultdict(list)
        for name in self.METHODS:
            monkeypatch.setattr(run, name, self._recording(name, getattr(run, name)))

    def _recording(self, name: str, method: Any) -> Any:
        def record_and_pass_through(*args: Any, **kwargs: Any) -> Any:
            self.calls[name].append((args, kwargs))
            return method(*args, **kwargs)

        return record_and_pass_through

    @property
    def logged_rows(self) -> list[dict[str, Any]]:
        return [args[0] for args, _ in self.calls["log"]]

    def rows_with(self, key: str) -> list[dict[str, Any]]:
        return [row for row in self.logged_rows if key in row]

    @property
    def logged_artifacts(self) -> list[tuple[Any, list[str]]]:
        return [(args[0], kwargs.get("aliases", [])) for args, kwargs in self.calls["log_artifact"]]


@pytest.fixture
def spy(offline_run, monkeypatch) -> RunSpy:
    return RunSpy(offline_run, monkeypatch)


@dataclass
class RunFile:
    """What a finished offline run recorded in its transaction log."""

    history: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[wandb_internal_pb2.ArtifactRecord] = field(default_factory=list)
    used_artifacts: list[Any] = field(default_factory=list)
    metrics: list[wandb_internal_pb2.MetricRecord] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)

    def artifacts_of_type(self, type_: str) -> list[wandb_internal_pb2.ArtifactRecord]:
        return [artifact for artifact in self.artifacts if artifact.type == type_]


@pytest.fixture
def run_file():
    """Returns a function that finishes a run and reads back its transaction log."""

    def read(run: Any) -> RunFile:
        path = run.settings.sync_file
        run.finish()
        recorded = RunFile()
        for payload in _read_finished_log(path):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(payload)
            kind = record.WhichOneof("record_type")
            recorded.kinds.append(kind)
            if kind == "history":
                recorded.history.append({_key(item): _value(item) for item in record.history.item})
            elif kind == "artifact":
                recorded.artifacts.append(record.artifact)
            elif kind == "use_artifact":
                recorded.used_artifacts.append(record.use_artifact)
            elif kind == "metric":
                recorded.metrics.append(record.metric)
        return recorded

    return read


def _read_finished_log(path: str) -> list[bytes]:
    """Reads a run's log once W&B's service has written it to the end (its exit record)."""
    deadline = time.monotonic() + 30
    while True:
        payloads = _read_log_records(path)
        if any(_is_exit(payload) for payload in payloads) or time.monotonic() > deadline:
            return payloads
        time.sleep(0.05)


def _is_exit(payload: bytes) -> bool:
    record = wandb_internal_pb2.Record()
    try:
        record.ParseFromString(payload)
    except DecodeError:
        return False  # a record W&B's service is still writing; read again shortly
    return record.WhichOneof("record_type") == "exit"


def _read_log_records(path: str | os.PathLike) -> list[bytes]:
    """Reads the records of a `.wandb` file (a LevelDB-style log after a 7-byte header)."""
    with open(path, "rb") as file:
        data = file.read()
    if not data:
        return []
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    records, pending, position = [], b"", _HEADER_SIZE
    while position + _HEADER_SIZE <= len(data):
        left_in_block = _BLOCK_SIZE - position % _BLOCK_SIZE
        if left_in_block < _HEADER_SIZE:
            position += left_in_block
            continue
        _, length, chunk_type = struct.unpack("<IHB", data[position : position + _HEADER_SIZE])
        chunk = data[position + _HEADER_SIZE : position + _HEADER_SIZE + length]
        position += _HEADER_SIZE + length
        if chunk_type == 1:
            records.append(chunk)
        elif chunk_type == 2:
            pending = chunk
        elif chunk_type == 3:
            pending += chunk
        elif chunk_type == 4:
            records.append(pending + chunk)
        else:  # zero padding at the end of a block
            position += _BLOCK_SIZE - position % _BLOCK_SIZE if position % _BLOCK_SIZE else 0
    return records


def _key(item: wandb_internal_pb2.HistoryItem) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


def _value(item: wandb_internal_pb2.HistoryItem) -> Any:
    # wandb 0.31 added the `value` oneof; older releases have `value_json` alone.
    kind = item.WhichOneof("value") if "value" in item.DESCRIPTOR.oneofs_by_name else None
    if kind == "json":
        return json.loads(item.json)
    if kind and kind != "none":
        return getattr(item, kind)
    return json.loads(item.value_json) if item.value_json else None
