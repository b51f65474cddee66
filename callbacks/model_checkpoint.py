"""`ModelCheckpoint`: Keras checkpoints, each one logged as a W&B model artifact."""

from __future__ import annotations

import collections
import os
import string
from typing import Any, Literal

import keras
import numpy as np
import wandb

from ktsweep.callbacks._run import require_run
from ktsweep.callbacks.compat.keras import SaveReportingModelCheckpoint, set_monitor_op

_MODEL_EXTENSIONS = (".keras", ".h5")
_WEIGHTS_EXTENSION = ".weights.h5"


class ModelCheckpoint(SaveReportingModelCheckpoint):
    """Saves the model or its weights like Keras, and logs every save as a W&B artifact.

    It saves exactly when `keras.callbacks.ModelCheckpoint` does: at the end of
    every epoch (or every `save_freq` batches), or only when `monitor` improves
    with `save_best_only=True`. Each file written is then logged to the active
    run as a new version of the artifact `run_<run id>_model`, of type
    `model`, with the aliases `latest` and `epoch_N` (or `epoch_N_batch_M` for
    batch saves; `N` and `M` count from 0 as in Keras's hooks), plus `best` when
    `monitor` is the best seen so far. An epoch that `save_best_only` skips
    logs nothing.

    A `filepath` with no extension, such as `"models"`, is a folder that receives
    `model-epoch{epoch:02d}.keras` files (`.weights.h5` with
    `save_weights_only=True`; `-batch{batch:04d}` is added for batch saves).
    Otherwise the path must end in `.keras` (or the legacy `.h5`) for whole
    models and `.weights.h5` for weights, the formats Keras 3 writes.

    To checkpoint every `N` epochs, pass `save_freq=steps_per_epoch * N`.

    After each save, `last_saved_path` holds the file written and
    `best_saved_path` the file of the best save so far; load either with
    `keras.models.load_model` (or `model.load_weights`) to resume training.

    Args:
        filepath: file path or folder to save to. It may hold formatting options
            filled from the epoch and the `logs`, such as
            `"ckpt-{epoch:02d}-{val_loss:.2f}.keras"`.
        monitor: metric that decides the best model. Defaults to `"val_loss"`.
        verbose: `0` is silent, `1` prints a message when it saves or logs.
            Defaults to `0`.
        save_best_only: only save when `monitor` improves. Defaults to `False`.
        save_weights_only: save only the weights (`model.save_weights`) instead
            of the whole model. Defaults to `False`.
        mode: `"auto"`, `"min"` or `"max"`: whether `monitor` improves by going
            down or up; `"auto"` infers it from the metric. Defaults to `"auto"`.
        save_freq: `"epoch"` to save at the end of each epoch, or an integer
            number of batches. Validation metrics only exist at epoch end, so
            monitor them with `"epoch"`. Defaults to `"epoch"`.
        initial_value_threshold: the value `monitor` has to beat to count as an
            improvement, for example the best value of a run you are resuming.
            Defaults to `None` (the first value counts).
        upload_every_n_saves: log every `N`-th save as an artifact (the last save
            of a `fit` is always logged). Defaults to `1`, every save.
        keep_last: keep only the last `K` checkpoint versions: older checkpoint
            files are deleted and, when the run is online, older artifact
            versions too. The best version is always kept. Defaults to `None`,
            keep everything.

    Example:

    ```python
    wandb.init(project="digits")
    checkpoint = ModelCheckpoint("models", monitor="val_accuracy", save_best_only=True)
    model.fit(x, y, validation_data=(xv, yv), epochs=5, callbacks=[checkpoint])
    best_model = keras.models.load_model(checkpoint.best_saved_path)
    ```
    """

    def __init__(
        self,
        filepath: str | os.PathLike,
        monitor: str = "val_loss",
        verbose: int = 0,
        save_best_only: bool = False,
        save_weights_only: bool = False,
        mode: Literal["auto", "min", "max"] = "auto",
        save_freq: Literal["epoch"] | int = "epoch",
        initial_value_threshold: float | None = None,
        upload_every_n_saves: int = 1,
        keep_last: int | None = None,
        options: Any = None,
    ) -> None:
        require_run(type(self).__name__)
        if options is not None:
            raise ValueError(
                "`options` (TensorFlow save options) doesn't exist in Keras 3, which saves "
                "`.keras` and `.weights.h5` files directly. Remove the argument; on TPU hosts "
                "save to a `gs://` path or a local folder."
            )
        if not _is_positive_int(upload_every_n_saves):
            raise ValueError(
                "`upload_every_n_saves` must be a positive integer (1 logs every save). "
                f"Received: {upload_every_n_saves!r}"
            )
        if keep_last is not None and not _is_positive_int(keep_last):
            raise ValueError(
                "`keep_last` must be a positive integer number of versions, or None to keep "
                f"all of them. Received: {keep_last!r}"
            )
        super().__init__(
            filepath=_checkpoint_path(os.fspath(filepath), save_weights_only, save_freq),
            monitor=monitor,
            verbose=verbose,
            save_best_only=save_best_only,
            save_weights_only=save_weights_only,
            mode=mode,
            save_freq=save_freq,
            initial_value_threshold=initial_value_threshold,
        )
        self.upload_every_n_saves = upload_every_n_saves
        self.keep_last = keep_last
        self.last_saved_path: str | None = None
        self.best_saved_path: str | None = None
        self._best_value = initial_value_threshold
        self._saves = 0
        self._last_save_logged = True
        self._last_aliases: list[str] = []
        self._saved_files: collections.deque[str] = collections.deque()
        self._logged_artifacts: collections.deque[Any] = collections.deque()
        self._best_artifact: Any = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        require_run(type(self).__name__)
        if self.monitor_op is None:
            try:
                set_monitor_op(self)
            except ValueError:
                if self.save_best_only:
                    raise
                # Without save_best_only the monitor only decides the `best` alias.

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if not self._last_save_logged and self.last_saved_path is not None:
            self._log_artifact(self.last_saved_path, self._last_aliases)

    def on_checkpoint_saved(
        self, filepath: str, epoch: int, batch: int | None, logs: dict[str, Any]
    ) -> None:
        is_best = self._improves_best(logs.get(self.monitor))
        self.last_saved_path = filepath
        if is_best:
            self.best_saved_path = filepath
        self._saves += 1
        aliases = ["latest", f"epoch_{epoch}" if batch is None else f"epoch_{epoch}_batch_{batch}"]
        if is_best:
            aliases.append("best")
        self._last_aliases = aliases
        self._last_save_logged = False
        if self._saves % self.upload_every_n_saves == 0:
            self._log_artifact(filepath, aliases)
        self._forget_old_files(filepath)

    def _improves_best(self, current: Any) -> bool:
        if self.monitor_op is None or not _is_scalar(current):
            return False
        # What Keras's `_is_improvement` computes, from the public `monitor_op` and `min_delta`.
        if self._best_value is None or bool(
            self.monitor_op(current - self.min_delta, self._best_value)
        ):
            self._best_value = float(current)
            return True
        return False

    def _log_artifact(self, filepath: str, aliases: list[str]) -> None:
        run = require_run(type(self).__name__)
        artifact = wandb.Artifact(f"run_{run.id}_model", type="model")
        artifact.add_file(filepath)
        logged = run.log_artifact(artifact, aliases=aliases)
        self._last_save_logged = True
        if self.verbose > 0:
            keras.utils.io_utils.print_msg(
                f"Logged {filepath} to W&B as a model artifact ({', '.join(aliases)})"
            )
        if "best" in aliases:
            self._best_artifact = logged
        self._logged_artifacts.append(logged)
        self._delete_old_versions(run)

    def _forget_old_files(self, filepath: str) -> None:
        if filepath in self._saved_files:
            return  # overwritten in place: still one version on disk
        self._saved_files.append(filepath)
        if self.keep_last is None:
            return
        while len(self._saved_files) > self.keep_last:
            old = self._saved_files.popleft()
            if old != self.best_saved_path and os.path.exists(old):
                os.remove(old)

    def _delete_old_versions(self, run: Any) -> None:
        # Offline and disabled runs upload nothing yet, so there is nothing to delete.
        if self.keep_last is None or run.offline or getattr(run, "disabled", False):
            return
        while len(self._logged_artifacts) > self.keep_last:
            old = self._logged_artifacts.popleft()
            if old is self._best_artifact:
                continue
            try:
                old.wait()
                old.delete(delete_aliases=True)
            except Exception as error:  # never stop training over storage housekeeping
                wandb.termwarn(f"Could not delete an old checkpoint version from W&B: {error!r}")


def _checkpoint_path(filepath: str, save_weights_only: bool, save_freq: Any) -> str:
    """Turns a folder into a templated file path; rejects what Keras 3 can't write."""
    extension = _WEIGHTS_EXTENSION if save_weights_only else ".keras"
    name = os.path.basename(filepath.rstrip("/\\"))
    if filepath.endswith(("/", "\\")) or os.path.isdir(filepath) or "." not in name:
        if _has_placeholders(name):
            raise ValueError(
                f"ModelCheckpoint can't write to {filepath!r}: a templated path needs a file "
                f"extension. Pass '{filepath}{extension}', or a folder path without "
                "placeholders to get one file per save in it."
            )
        batch = "-batch{batch:04d}" if save_freq != "epoch" else ""
        return os.path.join(filepath, f"model-epoch{{epoch:02d}}{batch}{extension}")
    if save_weights_only and not filepath.endswith(_WEIGHTS_EXTENSION):
        raise ValueError(
            f"ModelCheckpoint can't write weights to {filepath!r}: Keras 3 writes weights "
            f"only to '.weights.h5' files. Pass a path ending in '.weights.h5', or a folder "
            "path without an extension."
        )
    if not save_weights_only and (
        filepath.endswith(_WEIGHTS_EXTENSION) or not filepath.endswith(_MODEL_EXTENSIONS)
    ):
        hint = (
            "pass `save_weights_only=True` to save weights there"
            if filepath.endswith(_WEIGHTS_EXTENSION)
            else "pass a path ending in '.keras', or a folder path without an extension"
        )
        raise ValueError(
            f"ModelCheckpoint can't write a model to {filepath!r}: Keras 3 saves whole models "
            f"only to '.keras' (or legacy '.h5') files, not TensorFlow SavedModel folders; {hint}."
        )
    return filepath


def _has_placeholders(path: str) -> bool:
    return any(field is not None for _, field, _, _ in string.Formatter().parse(path))


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _is_scalar(value: Any) -> bool:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return True
    return isinstance(value, np.ndarray | np.generic) and np.ndim(value) == 0
