"""A trial's resumable checkpoint of its latest epoch, kept whatever the user's checkpoint rule.

A trial whose worker dies (kill -9, a lost node) is retried from `last.keras` in its checkpoint
folder, with `initial_epoch` from `last.json` beside it, instead of from scratch. The user's own
`checkpoint` callback may keep only the best epoch (`save_best_only`); this one always keeps the
latest, so the retry neither repeats nor skips an epoch.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import keras

from ktsweep.worker.reporter import plain_metrics

LAST_CHECKPOINT = "last.keras"
LAST_CHECKPOINT_INFO = "last.json"
WORKER_INFO = "worker.json"


class LastEpochCheckpoint(keras.callbacks.Callback):
    """Saves the whole model (with its optimizer state) at the end of epochs (by default every one).

    It writes `last.keras` in `directory`, replacing the previous epoch's file atomically (a
    worker killed mid-save leaves the previous checkpoint intact), then `last.json` with the
    number of epochs the checkpoint holds. After each save `path` and `epoch` say what is there.

    Args:
        directory: Folder for `last.keras` and `last.json`; created when missing.
        model_filename: File name of the checkpoint. Default `"last.keras"`.
        every_s: Save at the end of an epoch only when at least this many seconds have passed
            since the last save (or since training began), and always after the last epoch:
            short epochs then cost one save per `every_s` seconds instead of one each, and a
            worker that dies loses at most that much training. Training that stops early
            saves the epoch it stopped at. Default 0: every epoch.

    It also works in a training loop of the user's own that calls only `set_model` and
    `on_epoch_end` (as Keras Tuner's own callbacks do): training then counts as begun at the
    first `on_epoch_end`, and with no `epochs` known, no epoch counts as the last.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        model_filename: str = LAST_CHECKPOINT,
        every_s: float = 0.0,
    ):
        super().__init__()
        self.directory = Path(directory)
        self.model_filename = model_filename
        self.every_s = every_s
        self.path: str | None = None
        self.epoch: int | None = None
        self._last_save: float | None = None  # None: training has not begun
        self._unsaved: tuple[int, Any] | None = None
        self._history: list[dict[str, Any]] = []

    def on_train_begin(self, logs=None):
        self._last_save = time.monotonic()
        self._unsaved = None
        self._history = []

    def on_epoch_end(self, epoch, logs=None):
        if self._last_save is None:  # a loop of the user's own, which never began training
            self.on_train_begin()
        self._history.append({"step": epoch + 1, "metrics": plain_metrics(logs)})
        epochs = (self.params or {}).get("epochs")
        final = epochs is not None and epoch + 1 >= epochs
        if not final and time.monotonic() - self._last_save < self.every_s:
            self._unsaved = (epoch, logs)
            return
        self._save(epoch, logs)

    def on_train_end(self, logs=None):
        # Training that stopped early (a "stop" from the controller, EarlyStopping) ends on
        # an epoch that may not have been saved yet: the checkpoint holds where it ended.
        if self._unsaved is not None:
            self._save(*self._unsaved)

    def _save(self, epoch, logs):
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.directory / self.model_filename
        partial = self.directory / f"partial-{os.getpid()}-{self.model_filename}"
        self.model.save(partial)
        os.replace(partial, target)
        self.path, self.epoch = str(target), epoch + 1
        # The metrics of every epoch up to this one too: if the worker dies before its reports
        # reach the controller, the controller fills those steps in from here when it resumes.
        history = [entry for entry in self._history if entry["step"] <= epoch + 1]
        info = {
            "path": self.path,
            "epoch": epoch + 1,
            "metrics": plain_metrics(logs),
            "history": history,
        }
        _write_json(self.directory / LAST_CHECKPOINT_INFO, info)
        self._last_save = time.monotonic()
        self._unsaved = None


def last_checkpoint_record(directory: str | os.PathLike | None) -> dict[str, Any] | None:
    """What the latest checkpoint in `directory` holds, read once: `path`, `epoch` (epochs
    trained) and `history` (`{"step", "metrics"}` of the epochs its fit ran up to it); None
    when there is no checkpoint file."""
    info = _read_json(Path(directory) / LAST_CHECKPOINT_INFO) if directory else None
    if not info or not os.path.isfile(info.get("path", "")):
        return None
    history = info.get("history")
    if not isinstance(history, list):
        history = [{"step": int(info["epoch"]), "metrics": info.get("metrics") or {}}]
    return {"path": info["path"], "epoch": int(info["epoch"]), "history": history}


def read_last_checkpoint(directory: str | os.PathLike | None) -> tuple[str, int] | None:
    """The `(path, epochs)` of the latest-epoch checkpoint in `directory`, or None."""
    record = last_checkpoint_record(directory)
    return (record["path"], record["epoch"]) if record else None


def forget_last_checkpoint(directory: str | os.PathLike | None) -> None:
    """Delete a previous attempt's latest-epoch checkpoint (a fresh attempt starts over, an
    ended trial needs none), with any save a killed worker left half written."""
    if not directory:
        return
    partials = Path(directory).glob(f"partial-*-{LAST_CHECKPOINT}")
    for path in (
        Path(directory) / LAST_CHECKPOINT_INFO,
        Path(directory) / LAST_CHECKPOINT,
        *partials,
    ):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def write_worker_info(directory: str | os.PathLike | None, **info: Any) -> None:
    """Record which process runs the trial (`worker.json`: pid, host, and `info`)."""
    if not directory:
        return
    Path(directory).mkdir(parents=True, exist_ok=True)
    _write_json(
        Path(directory) / WORKER_INFO, {"pid": os.getpid(), "host": socket.gethostname(), **info}
    )


def read_worker_info(directory: str | os.PathLike) -> dict[str, Any] | None:
    """What `write_worker_info` recorded in `directory`, or None."""
    return _read_json(Path(directory) / WORKER_INFO)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(data))
    os.replace(partial, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
