"""`MetricsLogger`: logs Keras metrics and the learning rate to W&B."""

from __future__ import annotations

import functools
from typing import Any, Literal

import keras
import wandb

from ktsweep.callbacks._history_writer import HistoryWriter
from ktsweep.callbacks._learning_rate import (
    FixedLearningRateReader,
    fixed_value,
    learning_rate_schedule,
    schedule_value,
    schedule_values,
)
from ktsweep.callbacks._run import require_run


class MetricsLogger(keras.callbacks.Callback):
    """Logs the metrics Keras reports, and the learning rate, to the active W&B run.

    At the end of every epoch it logs each entry of the epoch's `logs` as
    `epoch/<name>` (train and validation metrics defined in `model.compile`),
    the epoch index as `epoch/epoch` and the learning rate as
    `epoch/learning_rate`, all plotted against `epoch/epoch`. With batch logging
    it also logs `batch/<name>`, `batch/batch_step` and `batch/learning_rate`
    at the end of every `log_freq`-th batch, plotted against `batch/batch_step`.
    These are the keys of `wandb.integration.keras.WandbMetricsLogger`.

    Batch rows are handed to W&B in batches (every second and at the end of each
    epoch) rather than one `wandb.log` call each, so per-batch logging costs
    training little; everything is logged by the time `fit` returns. System
    metrics (CPU, GPU, TPU, memory) come from W&B's own system monitor, which
    runs with every W&B run.

    A fixed learning rate is read again only after it is assigned from Python
    (`optimizer.learning_rate = ...`, `.assign(...)`, as `LearningRateScheduler`
    and `ReduceLROnPlateau` do) and at each epoch's start and end: on TensorFlow a
    read costs an eager op, too much for every batch.

    The learning rate is a fixed value or any Keras schedule. A schedule is
    evaluated at `initial_global_step` plus the number of batches this callback
    has seen, so it stays right when you resume with `fit(initial_epoch=...)`.

    Args:
        log_freq: `"epoch"` to log at the end of each epoch, `"batch"` to also
            log at the end of each batch, or an integer `N` to also log at the
            end of every `N`-th batch. Defaults to `"epoch"`.
        initial_global_step: the number of training steps already taken when
            resuming from `initial_epoch` with a learning-rate schedule,
            `steps_per_epoch * initial_epoch`. Defaults to `0`.

    Example:

    ```python
    wandb.init(project="digits")
    model.fit(x, y, epochs=5, callbacks=[MetricsLogger(log_freq="batch")])
    ```
    """

    def __init__(
        self,
        log_freq: Literal["epoch", "batch"] | int = "epoch",
        initial_global_step: int = 0,
    ) -> None:
        super().__init__()
        require_run(type(self).__name__)
        if log_freq == "batch":
            log_freq = 1
        batch_wise = isinstance(log_freq, int) and not isinstance(log_freq, bool)
        if not (log_freq == "epoch" or (batch_wise and log_freq > 0)):
            raise ValueError(
                f"`log_freq` must be 'epoch', 'batch' or a positive number of batches. "
                f"Received: log_freq={log_freq!r}"
            )
        if isinstance(initial_global_step, bool) or not isinstance(initial_global_step, int):
            raise ValueError(
                "`initial_global_step` must be an integer number of training steps "
                f"(steps_per_epoch * initial_epoch). Received: {initial_global_step!r}"
            )
        if initial_global_step < 0:
            raise ValueError(
                f"`initial_global_step` must be 0 or more. Received: {initial_global_step}"
            )
        self.logging_batch_wise = batch_wise
        self.log_freq: int | None = log_freq if batch_wise else None
        self.initial_global_step = initial_global_step
        self.global_step = initial_global_step
        self.global_batch = 0
        self._writer: HistoryWriter | None = None
        self._schedule: Any = None
        self._fixed_rate: FixedLearningRateReader | None = None
        self._iterations_at_begin = 0
        self._step_at_begin = initial_global_step
        if not batch_wise:
            # No batch hook at all: Keras then dispatches batches without waiting on callbacks
            # (JAX and PyTorch run ahead of the accelerator); the step comes from the optimizer.
            self.on_train_batch_end = super().on_train_batch_end

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        run = require_run(type(self).__name__)
        if self.logging_batch_wise:
            run.define_metric("batch/batch_step")
            run.define_metric("batch/*", step_metric="batch/batch_step")
        run.define_metric("epoch/epoch")
        run.define_metric("epoch/*", step_metric="epoch/epoch")
        self._close_fixed_rate()
        optimizer = self._optimizer()
        self._schedule = learning_rate_schedule(optimizer) if optimizer is not None else None
        if self._schedule is None and self.logging_batch_wise and optimizer is not None:
            self._fixed_rate = FixedLearningRateReader(optimizer)
        if self._schedule is not None and not self.logging_batch_wise:
            self._iterations_at_begin = _iterations(optimizer)
            self._step_at_begin = self.global_step
        self._close_writer()
        # Epoch rows go through the same writer as batch rows to keep their order.
        self._writer = (
            HistoryWriter(run, resolve=self._fill_learning_rates)
            if self.logging_batch_wise
            else None
        )

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self._fixed_rate is not None:
            self._fixed_rate.refresh()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.global_step += 1
        if not self.logging_batch_wise or batch % self.log_freq:
            return
        row = {f"batch/{name}": value for name, value in logs.items()} if logs else {}
        row["batch/batch_step"] = self.global_batch
        self._add_learning_rate(row, "batch/learning_rate")
        self._writer.log(row)
        self.global_batch += self.log_freq

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self._schedule is not None and not self.logging_batch_wise:
            steps = _iterations(self.model.optimizer) - self._iterations_at_begin
            self.global_step = self._step_at_begin + steps
        row = {f"epoch/{name}": value for name, value in logs.items()} if logs else {}
        row["epoch/epoch"] = epoch
        if self._fixed_rate is not None:
            self._fixed_rate.refresh()
        self._add_learning_rate(row, "epoch/learning_rate")
        if self._writer is not None:
            self._writer.log(row)
            self._writer.flush()
        else:
            require_run(type(self).__name__).log(row)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._close_writer()
        self._close_fixed_rate()

    def _optimizer(self) -> Any:
        """The model's optimizer; None for a model never compiled (a custom training loop)."""
        return getattr(self.model, "optimizer", None)

    def _add_learning_rate(self, row: dict[str, Any], key: str) -> None:
        if self._schedule is None:
            if self._fixed_rate is None and self._optimizer() is None:
                return  # nothing to read a learning rate from
            value = _fixed_value_or_none(self._optimizer(), self._fixed_rate)
            if value is not None:
                row[key] = value
        elif self._writer is not None and isinstance(
            self._schedule, keras.optimizers.schedules.LearningRateSchedule
        ):
            # A schedule is a pure function of the step, and one evaluation costs about a
            # millisecond: the writer fills in a whole batch of rows with one evaluation.
            row[key] = _StepOf(self.global_step)
        else:
            value = _schedule_value_or_none(self._schedule, self.global_step)
            if value is not None:
                row[key] = value

    def _fill_learning_rates(self, rows: list[dict[str, Any]]) -> None:
        found = [
            (row, key)
            for row in rows
            for key in ("batch/learning_rate", "epoch/learning_rate")
            if isinstance(row.get(key), _StepOf)
        ]
        if not found:
            return
        try:
            values = schedule_values(self._schedule, [row[key].step for row, key in found])
        except Exception as error:
            _warn_once(f"MetricsLogger can't read the learning rate, so it isn't logged: {error!r}")
            values = [None] * len(found)
        for (row, key), value in zip(found, values, strict=True):
            if value is None:
                del row[key]
            else:
                row[key] = value

    def _close_fixed_rate(self) -> None:
        if self._fixed_rate is not None:
            self._fixed_rate.close()
            self._fixed_rate = None

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class _StepOf:
    """Stands for the learning rate at `step` in a row until the writer fills it in."""

    __slots__ = ("step",)

    def __init__(self, step: int) -> None:
        self.step = step


def _iterations(optimizer: Any) -> int:
    return int(keras.ops.convert_to_numpy(optimizer.iterations))


def _schedule_value_or_none(schedule: Any, step: int) -> float | None:
    try:
        return schedule_value(schedule, step)
    except Exception as error:
        _warn_once(f"MetricsLogger can't read the learning rate, so it isn't logged: {error!r}")
        return None


def _fixed_value_or_none(
    optimizer: Any, reader: FixedLearningRateReader | None = None
) -> float | None:
    try:
        return reader.read() if reader is not None else fixed_value(optimizer)
    except Exception as error:
        _warn_once(f"MetricsLogger can't read the learning rate, so it isn't logged: {error!r}")
        return None


@functools.cache
def _warn_once(message: str) -> None:
    wandb.termwarn(message)
