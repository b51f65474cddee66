"""The W&B internals the worker relies on (contract: tests/compat/test_wandb.py).

`program` trials run a W&B-sweep script as `wandb agent` would, and follow what it logs; W&B
has no public API for the agent's command line, its parameter file, a hook on `log`, or reading
a run's history while it runs. W&B is imported only when one of these is called: the worker
runs without it.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Iterator
from typing import Any


def after_each_log(hook: Callable[[Any], None]) -> None:
    """Calls `hook(data)` after each `wandb.log(data)` (and `run.log(data)`) in this process."""
    import wandb

    # A patch of the public `wandb.Run` class: W&B has no callback on logged data, and
    # `wandb.log` is bound to `Run.log` of the run `wandb.init()` returns.
    original_log = wandb.Run.log

    def log(self, data, *args, **kwargs):
        result = original_log(self, data, *args, **kwargs)
        hook(data)
        return result

    wandb.Run.log = log


def sweep_command_template(command: list[Any]) -> list[Any]:
    """A sweep's `command` with its `${envvar:NAME}` macros expanded, as the W&B agent does."""
    # The agent's own expansion lives in `wandb.sdk.launch.sweeps.utils`, a non-public module.
    from wandb.sdk.launch.sweeps import utils as sweep_utils

    return sweep_utils.create_sweep_command(command)


def sweep_argument_macros(hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """W&B's argument macros (`args`, `args_no_hyphens`, `args_json`, ...) for these values."""
    # As above: the W&B agent builds them in `wandb.sdk.launch.sweeps.utils`.
    from wandb.sdk.launch.sweeps import utils as sweep_utils

    return sweep_utils.create_sweep_command_args(
        {"args": {name: {"value": value} for name, value in hyperparameters.items()}}
    )


def write_sweep_param_file(path: str | os.PathLike, hyperparameters: dict[str, Any]) -> None:
    """Writes the file `WANDB_SWEEP_PARAM_PATH` names, which `wandb.init()` reads into config."""
    # The writer of the format W&B's reader expects is in `wandb.sdk.lib.config_util`.
    from wandb.sdk.lib import config_util

    config_util.save_config_file_from_dict(
        str(path), {name: {"value": value} for name, value in hyperparameters.items()}
    )


# The run's transaction log: a 7-byte header (":W&B", magic 0xBEE1, version), then LevelDB-log
# blocks of 32 KiB holding records (checksum, length, type; FULL / FIRST / MIDDLE / LAST).
_HEADER = 7
_BLOCK = 32 * 1024
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def logged_rows(data: bytes) -> Iterator[dict[str, Any]]:
    """The values of each history row in a run's `.wandb` file so far, less W&B's `_` keys.

    W&B writes the file as the run goes, online and offline, and documents neither its format
    nor a reader: the framing is parsed here and the records with W&B's `wandb.proto`
    messages. A record still being written at the end of the file is left for the next read.
    """
    from wandb.proto import wandb_internal_pb2

    for payload in _records(data):
        record = wandb_internal_pb2.Record()
        try:
            record.ParseFromString(payload)
        except Exception:  # noqa: BLE001 - a torn record at the end of a live file
            continue
        if record.WhichOneof("record_type") != "history":
            continue
        values: dict[str, Any] = {}
        for item in record.history.item:
            key = item.key or "/".join(item.nested_key)
            if key.startswith("_"):
                continue
            try:
                values[key] = json.loads(item.value_json)
            except ValueError:
                continue
        yield values


def _records(data: bytes) -> Iterator[bytes]:
    if len(data) < _HEADER or data[:4] != b":W&B":
        return
    offset = _HEADER
    pending = b""
    while offset + 7 <= len(data):
        room = _BLOCK - offset % _BLOCK
        if room < 7:  # the rest of the block is padding
            offset += room
            continue
        _, length, kind = struct.unpack("<IHB", data[offset : offset + 7])
        start, end = offset + 7, offset + 7 + length
        if end > len(data):
            return  # still being written
        chunk = data[start:end]
        offset = end
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            yield pending + chunk
            pending = b""
        else:
            return
