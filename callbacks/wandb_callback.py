"""`WandbCallback`: the legacy one-callback W&B integration, rebuilt on Keras 3."""

from __future__ import annotations

import math
import operator
import os
import warnings
from typing import Any

import keras
import numpy as np
import wandb

from ktsweep.callbacks import legacy
from ktsweep.callbacks._gradients import loss_gradients
from ktsweep.callbacks._run import require_run

_IMAGE_TYPES = ("image", "images", "segmentation_mask")
_OUTPUT_TYPES = ("label", *_IMAGE_TYPES)
# wandb's callback (0.15, 0.16) capped the examples logged per epoch at 100.
_MAX_PREDICTIONS = 100


class WandbCallback(keras.callbacks.Callback):
    """Logs metrics, the best model, weights, gradients and example predictions to W&B.

    This is the legacy `wandb.keras.WandbCallback`, which wandb removed, rebuilt
    on Keras 3 so old scripts keep running. It accepts every argument of the last
    wandb releases that had it (0.15, 0.16), with the same meaning. For new code
    use `MetricsLogger`, `ModelCheckpoint` and `EvalCallback`.

    At the end of every epoch it logs the epoch's `logs` under their own names
    (`loss`, `val_loss`, ...) with `epoch`; with `log_batch_frequency=N` it also
    logs the batch `logs` every `N` batches. When `monitor` improves it records
    `<log_best_prefix><monitor>` and `<log_best_prefix>epoch` in the run summary
    and, with `save_model`, saves the model to `model-best.keras` (or
    `model-best.weights.h5`) in the run folder, logged as a `model` artifact at
    the end of training.

    Args:
        monitor: metric that decides the best model. Defaults to `"val_loss"`.
        mode: `"auto"`, `"min"` or `"max"`; any other value warns and means
            `"auto"`, as in wandb. Defaults to `"auto"`.
        verbose: `1` prints a message when the best model is saved. Defaults to `0`.
        save_model: save the best model. Defaults to `True`.
        save_weights_only: save only its weights. Defaults to `False`.
        log_weights: log a histogram of each layer's weights every epoch
            (`parameters/<layer>.weights`, `.bias`). Defaults to `False`.
        log_gradients: log a histogram of the loss gradient of each trainable
            weight every epoch (`gradients/<layer>/<weight>.gradient`, wandb's
            names), computed on `training_data`. Defaults to `False`.
        training_data: `(x, y)` for `log_gradients`. Defaults to `None`.
        validation_data: `(x, y)` for example predictions and `log_evaluation`;
            a generator or dataset of `(x, y)` batches is used as `generator`.
            In legacy mode (`ktsweep.callbacks.legacy.enable()`) the
            `validation_data` passed to `fit` is used when this is `None`;
            otherwise Keras 3 doesn't give callbacks the data of `fit`, so pass
            it here. Defaults to `None`.
        generator: a generator (or `keras.utils.PyDataset`) of `(x, y)` batches to
            take the examples from instead of `validation_data`. Defaults to `None`.
        validation_steps: how many batches to take from `generator`. Defaults to
            `None`, as many as `predictions` needs.
        labels: class names, used to caption image classifications. Defaults to `None`.
        predictions: how many example predictions to log each epoch, at most 100.
            Defaults to `36`.
        input_type: `"image"`, `"images"`, `"segmentation_mask"`, `"auto"` or `None`:
            what the model takes, for logging examples. Defaults to `None` (none logged).
        output_type: `"label"`, `"image"`, `"images"`, `"segmentation_mask"` or `None`
            (inferred): what the model returns. Defaults to `None`.
        log_evaluation: log a table of validation inputs, targets and outputs
            (`evaluation`) at the end of training. Defaults to `False`.
        class_colors: colors for the classes of segmentation masks. Defaults to `None`.
        log_batch_frequency: log batch metrics every this many batches. Defaults to
            `None`, epoch metrics only.
        log_best_prefix: prefix of the best values in the run summary. Defaults to `"best_"`.
        save_graph: accepted for old scripts; the model graph is not logged
            (W&B's graph logging needs `tf.keras`). Defaults to `True`.
        validation_indexes: row indexes of a W&B table you logged yourself
            (`table.get_index()`), one per validation sample: the `evaluation`
            table then links each prediction to its row (column `val_row`)
            instead of repeating inputs and targets. Defaults to `None`.
        validation_row_processor: `f(index, row) -> dict` adding columns to the
            `evaluation` table from `row["input"]` and `row["target"]`. Defaults to `None`.
        prediction_row_processor: `f(index, row) -> dict` adding columns to the
            `evaluation` table from `row["output"]` (and `row["val_row"]`).
            Defaults to `None`.
        infer_missing_processors: show inputs as images and targets and outputs
            as labels when no processor is given; `False` logs raw values.
            Defaults to `True`.
        log_evaluation_frequency: also log the `evaluation` table every this many
            epochs. Defaults to `0`.
        compute_flops: wandb computed GFLOPs with TensorFlow's profiler on a
            `tf.keras` graph, which Keras 3 models don't have; `True` warns, as
            wandb did for models it couldn't profile. Defaults to `False`.
        data_type: old name of `input_type`, deprecated by wandb; it sets
            `input_type` and warns. Defaults to `None`.
        **kwargs: arguments wandb's callback ignored; each is ignored with a
            warning.

    Example:

    ```python
    wandb.init(config={"bs": 12})
    model.fit(x, y, validation_data=(xv, yv), callbacks=[WandbCallback()])
    ```
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        verbose: int = 0,
        mode: str = "auto",
        save_weights_only: bool = False,
        log_weights: bool = False,
        log_gradients: bool = False,
        save_model: bool = True,
        training_data: Any = None,
        validation_data: Any = None,
        labels: list[str] | None = None,
        predictions: int = 36,
        generator: Any = None,
        input_type: str | None = None,
        output_type: str | None = None,
        log_evaluation: bool = False,
        validation_steps: int | None = None,
        class_colors: Any = None,
        log_batch_frequency: int | None = None,
        log_best_prefix: str = "best_",
        save_graph: bool = True,
        validation_indexes: list[Any] | None = None,
        validation_row_processor: Any = None,
        prediction_row_processor: Any = None,
        infer_missing_processors: bool = True,
        log_evaluation_frequency: int = 0,
        compute_flops: bool = False,
        data_type: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        require_run(type(self).__name__)
        for name in kwargs:
            # wandb's callback took `**kwargs` and dropped them silently.
            warnings.warn(
                f"`WandbCallback` ignores the argument `{name}`, as wandb's callback did. "
                "Remove it from the call.",
                stacklevel=2,
            )
        if data_type is not None:
            warnings.warn(
                "`WandbCallback(data_type=...)` is the old name of `input_type`; "
                f"using `input_type={data_type!r}`. Pass `input_type` instead.",
                FutureWarning,
                stacklevel=2,
            )
            # wandb let `data_type` override `input_type`.
            input_type = data_type
        if compute_flops:
            warnings.warn(
                "`compute_flops=True` used TensorFlow's profiler on a `tf.keras` graph, which "
                "Keras 3 models don't have, so GFLOPs aren't logged. Remove the argument; "
                "`model.summary()` lists the parameter count of each layer.",
                stacklevel=2,
            )
        if mode not in ("auto", "min", "max"):
            warnings.warn(
                f"`WandbCallback` mode {mode!r} is unknown, so it uses 'auto' as wandb did. "
                "Pass 'auto', 'min' or 'max'.",
                stacklevel=2,
            )
            mode = "auto"
        if log_gradients and training_data is None:
            raise ValueError(
                "`log_gradients=True` computes gradients on `training_data`: pass "
                "`training_data=(x, y)`."
            )
        if input_type not in (None, "auto", *_IMAGE_TYPES):
            raise ValueError(
                "`input_type` must be 'image', 'images', 'segmentation_mask', 'auto' or None. "
                f"Received: {input_type!r}"
            )
        if output_type not in (None, *_OUTPUT_TYPES):
            raise ValueError(
                "`output_type` must be 'label', 'image', 'images', 'segmentation_mask' or None. "
                f"Received: {output_type!r}"
            )
        if validation_data is not None and not isinstance(validation_data, (tuple, list)):
            # wandb read a generator or dataset given as `validation_data` as `generator`.
            generator, validation_data = validation_data, None
        if (
            (input_type or output_type or log_evaluation)
            and validation_data is None
            and generator is None
            and not legacy.is_enabled()
        ):
            raise ValueError(
                "Logging example predictions (`input_type`, `output_type`, `log_evaluation`) "
                "needs data: pass `validation_data=(x, y)` or `generator=`. Keras 3 doesn't "
                "give callbacks the validation data passed to `fit`; in legacy mode "
                "(`ktsweep.callbacks.legacy.enable()`) it is read from `fit`."
            )
        if log_batch_frequency is not None and (
            not isinstance(log_batch_frequency, int) or log_batch_frequency < 1
        ):
            raise ValueError(
                "`log_batch_frequency` must be a positive number of batches or None. "
                f"Received: {log_batch_frequency!r}"
            )
        self.monitor = monitor
        self.verbose = verbose
        self.mode = mode
        self.save_weights_only = save_weights_only
        self.log_weights = log_weights
        self.log_gradients = log_gradients
        self.save_model = save_model
        self.training_data = training_data
        self.validation_data = validation_data
        self.labels = list(labels) if labels is not None else None
        self.predictions = min(predictions, _MAX_PREDICTIONS)
        self.generator = generator
        self.input_type = input_type
        self.output_type = output_type
        self.log_evaluation = log_evaluation
        self.validation_steps = validation_steps
        self.class_colors = class_colors
        self.log_batch_frequency = log_batch_frequency
        self.log_best_prefix = log_best_prefix
        self.save_graph = save_graph
        self.validation_indexes = validation_indexes
        self.validation_row_processor = validation_row_processor
        self.prediction_row_processor = prediction_row_processor
        self.infer_missing_processors = infer_missing_processors
        self.log_evaluation_frequency = log_evaluation_frequency
        self.compute_flops = compute_flops
        # The `validation_data` of the `fit` call running now; legacy mode sets it.
        self.fit_validation_data: Any = None
        self.best: float | None = None
        self.filepath: str | None = None
        self._best_epoch: int | None = None
        self._better: Any = None
        self._has_example_data = False

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        run = require_run(type(self).__name__)
        suffix = ".weights.h5" if self.save_weights_only else ".keras"
        self.filepath = os.path.join(run.dir, f"model-best{suffix}")
        self._better = self._comparison()
        self._has_example_data = self._example_source() is not None
        if not self._has_example_data and (
            self.input_type or self.output_type or self.log_evaluation
        ):
            # wandb warned and trained on; old scripts without validation data must still run.
            warnings.warn(
                "`WandbCallback` has no validation data, so it logs no example predictions "
                "or evaluation table: pass `validation_data=(x, y)` to `fit` or to "
                "`WandbCallback`.",
                stacklevel=2,
            )

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.log_batch_frequency and batch % self.log_batch_frequency == 0:
            require_run(type(self).__name__).log({"batch": batch, **(logs or {})})

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        run = require_run(type(self).__name__)
        logs = logs or {}
        row: dict[str, Any] = {"epoch": epoch, **logs}
        if self.log_weights:
            row.update(self._weight_histograms())
        if self.log_gradients:
            row.update(self._gradient_histograms())
        if (self.input_type or self.output_type) and self._has_example_data:
            row["examples"] = self._examples()
        if (
            self.log_evaluation_frequency
            and self._has_example_data
            and (epoch + 1) % self.log_evaluation_frequency == 0
        ):
            row["evaluation"] = self._evaluation_table()
        run.log(row)
        current = logs.get(self.monitor)
        if current is not None and (self.best is None or self._better(current, self.best)):
            self._record_best(run, epoch, float(current))

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        run = require_run(type(self).__name__)
        if self.log_evaluation and self._has_example_data:
            run.log({"evaluation": self._evaluation_table()})
        if self.save_model and self.filepath and os.path.exists(self.filepath):
            artifact = wandb.Artifact(f"model-{run.name or run.id}", type="model")
            artifact.add_file(self.filepath)
            run.log_artifact(artifact, aliases=["latest", f"epoch_{self._best_epoch}", "best"])

    def _record_best(self, run: Any, epoch: int, current: float) -> None:
        previous, self.best, self._best_epoch = self.best, current, epoch
        run.summary[f"{self.log_best_prefix}{self.monitor}"] = current
        run.summary[f"{self.log_best_prefix}epoch"] = epoch
        if not self.save_model:
            return
        if self.verbose > 0:
            keras.utils.io_utils.print_msg(
                f"Epoch {epoch + 1:05d}: {self.monitor} improved from {previous} to {current}, "
                f"saving model to {self.filepath}"
            )
        os.makedirs(os.path.dirname(self.filepath), exist_ok=True)
        if self.save_weights_only:
            self.model.save_weights(self.filepath, overwrite=True)
        else:
            self.model.save(self.filepath, overwrite=True)

    def _comparison(self) -> Any:
        if self.mode == "min":
            return operator.lt
        if self.mode == "max":
            return operator.gt
        name = self.monitor.removeprefix("val_")
        return operator.gt if ("acc" in name or name.startswith("fmeasure")) else operator.lt

    def _weight_histograms(self) -> dict[str, wandb.Histogram]:
        histograms = {}
        for layer in self.model.layers:
            weights = layer.get_weights()
            for suffix, values in zip(("weights", "bias"), weights[:2], strict=False):
                if np.size(values) and np.issubdtype(np.asarray(values).dtype, np.number):
                    histograms[f"parameters/{layer.name}.{suffix}"] = wandb.Histogram(values)
        return histograms

    def _gradient_histograms(self) -> dict[str, wandb.Histogram]:
        x, y = self.training_data
        gradients = loss_gradients(self.model, x, y)
        model_names = _model_names(self.model)
        return {
            f"gradients/{_tf_keras_weight_name(path, model_names)}.gradient": wandb.Histogram(g)
            for path, g in gradients
        }

    def _example_source(self) -> tuple[str, Any] | None:
        """Returns `("arrays", (x, y))` or `("generator", batches)`, or `None` without data.

        The callback's own data wins over the `validation_data` of `fit`.
        """
        if self.validation_data is not None:
            return "arrays", tuple(self.validation_data[:2])
        if self.generator is not None:
            return "generator", self.generator
        fit_data = self.fit_validation_data
        if fit_data is None:
            return None
        if isinstance(fit_data, (tuple, list)):
            # `fit` takes `(x, y)` or `(x, y, sample_weight)`.
            return "arrays", tuple(fit_data[:2])
        return "generator", fit_data

    def _example_data(self) -> tuple[np.ndarray, np.ndarray]:
        kind, source = self._example_source()
        if kind == "arrays":
            x, y = source
            return np.asarray(x)[: self.predictions], np.asarray(y)[: self.predictions]
        xs, ys = [], []
        steps = self.validation_steps or math.inf
        for step, batch in enumerate(source):
            if step >= steps or sum(len(x) for x in xs) >= self.predictions:
                break
            xs.append(np.asarray(batch[0]))
            ys.append(np.asarray(batch[1]))
        if not xs:
            raise ValueError(
                "The validation generator yielded no batches; it must yield `(x, y)` batches."
            )
        return (
            np.concatenate(xs)[: self.predictions],
            np.concatenate(ys)[: self.predictions],
        )

    def _examples(self) -> list[wandb.Image]:
        x, y = self._example_data()
        outputs = np.asarray(self.model.predict(x, verbose=0))
        output_type = self.output_type or self._inferred_output_type(outputs)
        examples = []
        for sample, target, output in zip(x, y, outputs, strict=True):
            image = _displayable(sample)
            if output_type == "label":
                examples.append(wandb.Image(image, caption=str(self._label(output))))
            elif output_type == "segmentation_mask":
                masks = {
                    "prediction": {
                        "mask_data": _mask(output),
                        "class_labels": self._class_labels(),
                    },
                    "ground_truth": {
                        "mask_data": _mask(target),
                        "class_labels": self._class_labels(),
                    },
                }
                examples.append(wandb.Image(image, masks=masks))
            else:
                strip = np.concatenate(
                    [_as_rgb(image), _as_rgb(_displayable(output)), _as_rgb(_displayable(target))],
                    axis=1,
                )
                examples.append(wandb.Image(strip, caption="input | output | target"))
        return examples

    def _evaluation_table(self) -> wandb.Table:
        x, y = self._example_data()
        outputs = np.asarray(self.model.predict(x, verbose=0))
        count = len(x)
        if self.validation_indexes is not None:
            count = min(count, len(self.validation_indexes))
        rows = [
            self._evaluation_row(index, x[index], y[index], outputs[index])
            for index in range(count)
        ]
        columns = list(dict.fromkeys(column for row in rows for column in row))
        table = wandb.Table(columns=columns, allow_mixed_types=True)
        for row in rows:
            table.add_data(*(row.get(column) for column in columns))
        return table

    def _evaluation_row(
        self, index: int, sample: np.ndarray, target: np.ndarray, output: np.ndarray
    ) -> dict[str, Any]:
        # As wandb's `ValidationDataLogger`: a processor adds columns to the raw values, and
        # values are only shown as images or labels when no processor is given.
        row: dict[str, Any] = {}
        if self.validation_indexes is not None:
            row["val_row"] = self.validation_indexes[index]
        elif self.validation_row_processor is not None:
            row.update(input=sample.tolist(), target=target.tolist())
            row.update(self.validation_row_processor(index, {"input": sample, "target": target}))
        elif self.infer_missing_processors:
            image_input = self.input_type in _IMAGE_TYPES or (
                self.input_type == "auto" and _looks_like_images(sample[None])
            )
            cell = wandb.Image(_displayable(sample)) if image_input else sample.tolist()
            row.update(input=cell, target=self._label(target))
        else:
            row.update(input=sample.tolist(), target=target.tolist())
        if self.prediction_row_processor is not None:
            row["output"] = output.tolist()
            link = row.get("val_row", index)
            row.update(self.prediction_row_processor(index, {"val_row": link, "output": output}))
        elif self.infer_missing_processors:
            row["output"] = self._label(output)
        else:
            row["output"] = output.tolist()
        return row

    def _inferred_output_type(self, outputs: np.ndarray) -> str:
        if outputs.ndim <= 2:
            return "label"
        return "segmentation_mask" if self.input_type == "segmentation_mask" else "images"

    def _label(self, value: Any) -> Any:
        value = np.asarray(value)
        index = int(value.argmax()) if value.size > 1 else int(round(float(value.reshape(-1)[0])))
        if self.labels is not None and 0 <= index < len(self.labels):
            return self.labels[index]
        return index

    def _class_labels(self) -> dict[int, str]:
        names = self.labels or []
        return {i: name for i, name in enumerate(names)}


def _model_names(model: keras.Model) -> set[str]:
    names = {model.name}
    for layer in model.layers if isinstance(model, keras.Model) else []:
        if isinstance(layer, keras.Model):
            names |= _model_names(layer)
    return names


def _tf_keras_weight_name(path: str, model_names: set[str]) -> str:
    """Returns the name `tf.keras` gave a weight (`dense/kernel`) from its Keras 3 path.

    Keras 3 paths start with the names of the models holding the layer
    (`sequential/dense/kernel`); `tf.keras` names, which wandb logged and saved
    dashboards refer to, started at the layer.
    """
    parts = path.split("/")
    while len(parts) > 2 and parts[0] in model_names:
        parts.pop(0)
    return "/".join(parts)


def _looks_like_images(x: np.ndarray) -> bool:
    return x.ndim in (3, 4)


def _displayable(sample: np.ndarray) -> np.ndarray:
    sample = np.asarray(sample)
    if sample.ndim == 1:
        side = math.isqrt(sample.size)
        if side * side == sample.size:
            return sample.reshape(side, side)
    if sample.ndim == 3 and sample.shape[-1] == 1:
        return sample[..., 0]
    return sample


def _as_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype="float32")
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    low, high = float(image.min()), float(image.max())
    return (image - low) / (high - low) if high > low else np.zeros_like(image)


def _mask(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim == 3 and values.shape[-1] > 1:
        return values.argmax(axis=-1).astype("uint8")
    return np.rint(values.reshape(values.shape[:2])).astype("uint8")
