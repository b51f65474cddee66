"""The seed's usage examples run with only their import line changed."""

from __future__ import annotations

import os

import numpy as np
import wandb

from ktsweep.callbacks import (
    WandbCallback,
    WandbEvalCallback,
    WandbMetricsLogger,
    WandbModelCheckpoint,
)


class WandbClfEvalCallback(WandbEvalCallback):
    """The seed's eval-table example, as written for wandb (older hook signatures)."""

    def __init__(self, validation_data, data_table_columns, pred_table_columns):
        super().__init__(data_table_columns, pred_table_columns)
        self.x = validation_data[0]
        self.y = validation_data[1]

    def add_ground_truth(self):
        for idx, (image, label) in enumerate(zip(self.x, self.y, strict=True)):
            self.data_table.add_data(idx, wandb.Image(image.reshape(8, 8)), label)

    def add_model_predictions(self, epoch):
        preds = self.model.predict(self.x, verbose=0)
        preds = np.argmax(preds, axis=-1)
        data_table_ref = self.data_table_ref
        table_idxs = data_table_ref.get_index()
        for idx in table_idxs:
            pred = preds[idx]
            self.pred_table.add_data(
                epoch,
                data_table_ref.data[idx][0],
                data_table_ref.data[idx][1],
                data_table_ref.data[idx][2],
                pred,
            )


def test_seed_usage_pattern_runs(wandb_env, digits, make_model):
    x, y, xv, yv = digits.x, digits.y, digits.x_val, digits.y_val
    model = make_model()

    wandb.init(config={"bs": 12})
    model.fit(
        x,
        y,
        validation_data=(xv, yv),
        epochs=1,
        verbose=0,
        callbacks=[WandbMetricsLogger(), WandbModelCheckpoint("models")],
    )
    model.fit(x, y, epochs=1, verbose=0, callbacks=[WandbMetricsLogger(log_freq="batch")])
    model.fit(x, y, epochs=1, verbose=0, callbacks=[WandbMetricsLogger(log_freq=10)])
    wandb.finish()

    assert os.listdir("models") == ["model-epoch01.keras"]


def test_seed_eval_table_example_runs(wandb_env, digits, make_model):
    x, y, xv, yv = digits.x, digits.y, digits.x_val[:10], digits.y_val[:10]
    model = make_model()

    wandb.init(config={"bs": 12})
    evaluation = WandbClfEvalCallback(
        validation_data=(xv, yv),
        data_table_columns=["idx", "image", "label"],
        pred_table_columns=["epoch", "idx", "image", "label", "pred"],
    )
    model.fit(x, y, epochs=2, verbose=0, validation_data=(xv, yv), callbacks=[evaluation])
    wandb.finish()

    assert [row[0] for row in evaluation.pred_table.data] == [1] * 10
    assert [row[3] for row in evaluation.pred_table.data] == list(yv)


def test_seed_legacy_example_runs(wandb_env, digits, make_model):
    x, y, xv, yv = digits.x, digits.y, digits.x_val, digits.y_val
    model = make_model()

    wandb.init(config={"bs": 12})
    history = model.fit(
        x, y, validation_data=(xv, yv), epochs=1, verbose=0, callbacks=[WandbCallback()]
    )
    assert wandb.run.summary["best_val_loss"] == history.history["val_loss"][0]
    wandb.finish()
