"""`ClassificationEvalCallback`: image-classification prediction tables, ready made."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import wandb

from ktsweep.callbacks.eval_callback import EvalCallback


class ClassificationEvalCallback(EvalCallback):
    """Logs validation images with their labels once, and the model's predictions every epoch.

    The data table has the columns `idx`, `image`, `label`; each epoch's
    prediction table has `epoch`, `idx`, `image`, `label`, `pred` and one
    `score_<class>` column per class with the model's output for that class.
    Images and labels in the prediction tables reference the data table's, so
    each image is uploaded once. This is the image-classification example of
    the W&B Keras integration, ready made.

    Args:
        validation_data: `(x, y)`: images (`(n, h, w)`, `(n, h, w, c)`, or flat
            `(n, h * w)` square images) and integer or one-hot labels.
        class_names: names of the classes, in the order of the model's outputs.
            Defaults to `None`, the class indexes.
        max_samples: log only the first `max_samples` samples. Defaults to
            `100`; `None` logs all of them.
        image_shape: shape to reshape each flat sample to before logging it as
            an image, such as `(8, 8)`. Defaults to `None`: flat samples of a
            square length are reshaped to a square, others logged as they are.

    Example:

    ```python
    wandb.init(project="digits")
    evaluation = ClassificationEvalCallback((x_val, y_val), max_samples=50)
    model.fit(x, y, epochs=2, callbacks=[evaluation])
    ```
    """

    def __init__(
        self,
        validation_data: tuple[Any, Any],
        class_names: Sequence[str] | None = None,
        max_samples: int | None = 100,
        image_shape: Sequence[int] | None = None,
    ) -> None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError(
                "`validation_data` must be a tuple `(x, y)` of images and labels. "
                f"Received: {type(validation_data).__name__}"
            )
        if max_samples is not None and max_samples < 1:
            raise ValueError(f"`max_samples` must be positive or None. Received: {max_samples}")
        x, y = (np.asarray(part) for part in validation_data)
        if len(x) != len(y):
            raise ValueError(
                f"`validation_data` has {len(x)} images but {len(y)} labels; pass one "
                "label per image."
            )
        self.x = x[:max_samples]
        self.y = y[:max_samples]
        self.class_names = list(class_names) if class_names is not None else None
        self.image_shape = tuple(image_shape) if image_shape is not None else None
        super().__init__(
            data_table_columns=["idx", "image", "label"],
            pred_table_columns=["epoch", "idx", "image", "label", "pred"],
        )

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        outputs = self.model.outputs[0].shape[-1] if getattr(self.model, "outputs", None) else None
        names = self.class_names or [str(i) for i in range(outputs or 0)]
        self.pred_table_columns = ["epoch", "idx", "image", "label", "pred"] + [
            f"score_{name}" for name in names
        ]
        super().on_train_begin(logs)

    def add_ground_truth(self, logs: dict[str, Any] | None = None) -> None:
        labels = self.y.argmax(axis=-1) if self.y.ndim > 1 else self.y
        for idx, (image, label) in enumerate(zip(self.x, labels, strict=True)):
            self.data_table.add_data(idx, wandb.Image(self._as_image(image)), self._name(label))

    def add_model_predictions(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        scores = np.asarray(self.model.predict(self.x, verbose=0))
        scores = scores.reshape(len(self.x), -1)
        predictions = scores.argmax(axis=-1)
        rows = self.data_table_ref.data
        for idx in self.data_table_ref.get_index():
            idx_cell, image, label = rows[idx][:3]
            class_scores = [float(score) for score in scores[idx]]
            width = len(self.pred_table_columns) - 5
            class_scores = (class_scores + [None] * width)[:width]
            self.pred_table.add_data(
                epoch, idx_cell, image, label, self._name(predictions[idx]), *class_scores
            )

    def _name(self, label: Any) -> Any:
        label = int(label)
        if self.class_names is not None and 0 <= label < len(self.class_names):
            return self.class_names[label]
        return label

    def _as_image(self, sample: np.ndarray) -> np.ndarray:
        if self.image_shape is not None:
            return sample.reshape(self.image_shape)
        if sample.ndim == 1:
            side = math.isqrt(sample.size)
            if side * side == sample.size:
                return sample.reshape(side, side)
        return sample
