"""Specification of `EvalCallback` and `ClassificationEvalCallback`."""

from __future__ import annotations

import numpy as np
import pytest
import wandb

from ktsweep.callbacks import ClassificationEvalCallback, EvalCallback, WandbEvalCallback

SAMPLES = 12


class SeedStyleEval(EvalCallback):
    """The seed's example: idx, image, label rows; epoch, idx, image, label, pred rows."""

    def __init__(self, validation_data, data_table_columns, pred_table_columns):
        super().__init__(data_table_columns, pred_table_columns)
        self.x, self.y = validation_data

    def add_ground_truth(self, logs=None):
        for idx, (image, label) in enumerate(zip(self.x, self.y, strict=True)):
            self.data_table.add_data(idx, wandb.Image(image.reshape(8, 8)), label)

    def add_model_predictions(self, epoch, logs=None):
        preds = self.model.predict(self.x, verbose=0).argmax(axis=-1)
        ref = self.data_table_ref
        for idx in ref.get_index():
            self.pred_table.add_data(
                epoch, ref.data[idx][0], ref.data[idx][1], ref.data[idx][2], preds[idx]
            )


def seed_style_eval(digits) -> SeedStyleEval:
    return SeedStyleEval(
        validation_data=(digits.x_val[:SAMPLES], digits.y_val[:SAMPLES]),
        data_table_columns=["idx", "image", "label"],
        pred_table_columns=["epoch", "idx", "image", "label", "pred"],
    )


def fit(model, digits, callbacks, epochs=2):
    model.fit(digits.x, digits.y, batch_size=128, epochs=epochs, verbose=0, callbacks=callbacks)


def artifacts_of_type(spy, type_):
    return [
        (artifact, aliases) for artifact, aliases in spy.logged_artifacts if artifact.type == type_
    ]


def test_constructing_without_run_says_to_call_wandb_init(wandb_env, digits):
    with pytest.raises(wandb.Error, match=r"wandb\.init\(\)"):
        seed_style_eval(digits)


def test_seed_name_is_an_alias():
    assert WandbEvalCallback is EvalCallback


def test_subclass_must_implement_both_hooks(offline_run):
    class Incomplete(EvalCallback):
        def add_ground_truth(self, logs=None):
            pass

    with pytest.raises(TypeError, match="add_model_predictions"):
        Incomplete(["idx"], ["epoch"])


def test_data_table_is_logged_once_and_a_prediction_table_per_epoch(
    spy, run_file, offline_run, digits, make_model
):
    fit(make_model(), digits, [seed_style_eval(digits)])

    assert len(artifacts_of_type(spy, "dataset")) == 1
    predictions = artifacts_of_type(spy, "evaluation")
    assert [aliases for _, aliases in predictions] == [["latest", "epoch_0"], ["latest", "epoch_1"]]
    assert all(a.name == f"run_{offline_run.id}_pred" for a, _ in predictions)
    recorded = run_file(offline_run)
    assert len(recorded.artifacts_of_type("dataset")) == 1
    assert len(recorded.artifacts_of_type("evaluation")) == 2


def test_works_offline_without_use_artifact(spy, offline_run, digits, make_model):
    callback = seed_style_eval(digits)
    fit(make_model(), digits, [callback], epochs=1)

    assert spy.calls["use_artifact"] == []
    assert len(callback.pred_table.data) == SAMPLES


def test_data_table_ref_rows_match_the_ground_truth(offline_run, digits, make_model):
    callback = seed_style_eval(digits)
    fit(make_model(), digits, [callback], epochs=1)

    ref = callback.data_table_ref
    assert [int(idx) for idx in ref.get_index()] == list(range(SAMPLES))
    assert [ref.data[idx][2] for idx in ref.get_index()] == list(digits.y_val[:SAMPLES])
    assert all(isinstance(ref.data[idx][1], wandb.Image) for idx in range(SAMPLES))


def test_prediction_tables_reference_images_instead_of_uploading_them(
    spy, offline_run, digits, make_model
):
    fit(make_model(), digits, [seed_style_eval(digits)])

    ((dataset, _),) = artifacts_of_type(spy, "dataset")
    for prediction, _ in artifacts_of_type(spy, "evaluation"):
        images = [e for p, e in prediction.manifest.entries.items() if p.endswith(".png")]
        assert len(images) == SAMPLES
        for entry in images:
            scheme, _, location = (entry.ref or "").partition("://")
            assert scheme == "wandb-client-artifact", f"{entry.path} was copied, not referenced"
            assert location.split("/", 1)[1] in dataset.manifest.entries


def test_classification_callback_logs_predictions_and_class_scores(
    spy, offline_run, digits, make_model
):
    callback = ClassificationEvalCallback(
        (digits.x_val, digits.y_val), max_samples=SAMPLES, class_names=[f"d{i}" for i in range(10)]
    )
    model = make_model()
    fit(model, digits, [callback], epochs=1)

    assert callback.data_table.columns == ["idx", "image", "label"]
    assert callback.pred_table.columns == ["epoch", "idx", "image", "label", "pred"] + [
        f"score_d{i}" for i in range(10)
    ]
    rows = callback.pred_table.data
    assert len(rows) == SAMPLES
    scores = model.predict(digits.x_val[:SAMPLES], verbose=0)
    for idx, row in enumerate(rows):
        assert row[3] == f"d{digits.y_val[idx]}"
        assert row[4] == f"d{scores[idx].argmax()}"
        np.testing.assert_allclose(row[5:], scores[idx], rtol=1e-5, atol=1e-6)
    assert len(artifacts_of_type(spy, "evaluation")) == 1


def test_classification_callback_rejects_mismatched_data(offline_run, digits):
    with pytest.raises(ValueError, match="one label per image"):
        ClassificationEvalCallback((digits.x_val[:5], digits.y_val[:4]))


def test_eval_callback_works_in_disabled_mode(wandb_env, digits, make_model):
    wandb.init(mode="disabled")
    callback = seed_style_eval(digits)
    fit(make_model(), digits, [callback], epochs=1)
    assert len(callback.pred_table.data) == SAMPLES
