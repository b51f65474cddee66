"""`EvalCallback`: the base class for callbacks that log prediction tables to W&B."""

from __future__ import annotations

import abc
import inspect
from typing import Any

import keras
import wandb

from ktsweep.callbacks._run import require_run
from ktsweep.callbacks._table_reference import TableReference


class EvalCallback(keras.callbacks.Callback, abc.ABC):
    """Base class for callbacks that log a data table once and a prediction table per epoch.

    Subclass it and implement `add_ground_truth` and `add_model_predictions`.
    At `on_train_begin` it creates `data_table`, calls `add_ground_truth` to
    fill it, and logs it as an artifact (type `dataset`). It then sets
    `data_table_ref`, the logged table's rows: `data_table_ref.data[idx][n]` is
    row `idx`, column `n`, and `data_table_ref.get_index()` lists the row
    indexes. At every `on_epoch_end` it creates `pred_table`, calls
    `add_model_predictions`, and logs it as a new version of the artifact
    `run_<run id>_pred` (type `evaluation`, aliases `latest` and `epoch_N`).

    Media taken from `data_table_ref` are stored in prediction tables as
    references to the files already logged with the data table, so they are
    uploaded once. This works with online, offline and disabled runs (it
    doesn't call `use_artifact`, which offline runs can't).

    Override `on_train_begin` or `on_epoch_end` for finer control, or
    `on_train_batch_end` to log predictions every N batches.

    Args:
        data_table_columns: column names of `data_table`.
        pred_table_columns: column names of `pred_table`.

    Example:

    ```python
    class DigitsEval(EvalCallback):
        def __init__(self, x, y):
            super().__init__(["idx", "image", "label"], ["epoch", "idx", "image", "label", "pred"])
            self.x, self.y = x, y

        def add_ground_truth(self, logs=None):
            for idx, (image, label) in enumerate(zip(self.x, self.y)):
                self.data_table.add_data(idx, wandb.Image(image.reshape(8, 8)), label)

        def add_model_predictions(self, epoch, logs=None):
            preds = self.model.predict(self.x, verbose=0).argmax(axis=-1)
            ref = self.data_table_ref
            for idx in ref.get_index():
                row = ref.data[idx]
                self.pred_table.add_data(epoch, row[0], row[1], row[2], preds[idx])

    model.fit(x, y, epochs=2, callbacks=[DigitsEval(x_val[:50], y_val[:50])])
    ```
    """

    def __init__(self, data_table_columns: list[str], pred_table_columns: list[str]) -> None:
        super().__init__()
        require_run(type(self).__name__)
        self.data_table_columns = list(data_table_columns)
        self.pred_table_columns = list(pred_table_columns)
        self.data_table: wandb.Table | None = None
        self.data_table_ref: TableReference | None = None
        self.pred_table: wandb.Table | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.init_data_table(column_names=self.data_table_columns)
        _call_with_optional(self.add_ground_truth, logs)
        self.log_data_table()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.init_pred_table(column_names=self.pred_table_columns)
        _call_with_optional(self.add_model_predictions, epoch, logs)
        self.log_pred_table(aliases=["latest", f"epoch_{epoch}"])

    @abc.abstractmethod
    def add_ground_truth(self, logs: dict[str, Any] | None = None) -> None:
        """Adds the ground truth rows to `data_table`; called once, at `on_train_begin`.

        Example:

        ```python
        for idx, (image, label) in enumerate(zip(self.x, self.y)):
            self.data_table.add_data(idx, wandb.Image(image), label)
        ```
        """

    @abc.abstractmethod
    def add_model_predictions(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Adds the model's predictions to `pred_table`; called at every `on_epoch_end`.

        Reuse the data rows through `self.data_table_ref.data[idx][n]` so media are
        referenced, not uploaded again.

        Example:

        ```python
        preds = self.model.predict(self.x, verbose=0).argmax(axis=-1)
        for idx in self.data_table_ref.get_index():
            row = self.data_table_ref.data[idx]
            self.pred_table.add_data(epoch, row[0], row[1], row[2], preds[idx])
        ```
        """

    def init_data_table(self, column_names: list[str]) -> None:
        """Creates an empty `data_table` with these columns."""
        self.data_table = wandb.Table(columns=column_names, allow_mixed_types=True)

    def init_pred_table(self, column_names: list[str]) -> None:
        """Creates an empty `pred_table` with these columns."""
        self.pred_table = wandb.Table(columns=column_names, allow_mixed_types=True)

    def log_data_table(
        self, name: str = "val", type: str = "dataset", table_name: str = "val_data"
    ) -> None:
        """Logs `data_table` as an artifact and sets `data_table_ref` to its rows.

        Args:
            name: artifact name. Defaults to `"val"`.
            type: artifact type. Defaults to `"dataset"`.
            table_name: name of the table inside the artifact. Defaults to `"val_data"`.
        """
        run = require_run(self.__class__.__name__)
        artifact = wandb.Artifact(name, type=type)
        artifact.add(self.data_table, table_name)
        run.log_artifact(artifact)
        self.data_table_ref = TableReference(self.data_table, artifact)

    def log_pred_table(
        self,
        type: str = "evaluation",
        table_name: str = "eval_data",
        aliases: list[str] | None = None,
    ) -> None:
        """Logs `pred_table` as a new version of the artifact `run_<run id>_pred`.

        Args:
            type: artifact type. Defaults to `"evaluation"`.
            table_name: name of the table inside the artifact. Defaults to `"eval_data"`.
            aliases: aliases of this version. Defaults to `["latest"]`.
        """
        run = require_run(self.__class__.__name__)
        artifact = wandb.Artifact(f"run_{run.id}_pred", type=type)
        artifact.add(self.pred_table, table_name)
        run.log_artifact(artifact, aliases=aliases or ["latest"])


def _call_with_optional(method: Any, *args: Any) -> None:
    """Calls `method`, dropping trailing arguments that an older override doesn't take."""
    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        method(*args)
        return
    if any(p.kind in (p.VAR_POSITIONAL,) for p in parameters):
        method(*args)
        return
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    method(*args[: len(positional)])
