"""Specification of `MetricsLogger`."""

from __future__ import annotations

import copy
import threading

import keras
import pytest
import wandb
from keras.src.utils.python_utils import is_default

from ktsweep.callbacks import MetricsLogger, WandbMetricsLogger
from ktsweep.callbacks._history_writer import HistoryWriter

EPOCHS = 2
BATCH_SIZE = 128


def steps_per_epoch(digits) -> int:
    return -(-len(digits.x) // BATCH_SIZE)


def fit(model, digits, callbacks, epochs=EPOCHS, **kwargs):
    return model.fit(
        digits.x,
        digits.y,
        validation_data=(digits.x_val, digits.y_val),
        batch_size=BATCH_SIZE,
        epochs=epochs,
        verbose=0,
        callbacks=callbacks,
        **kwargs,
    )


def test_constructing_without_run_says_to_call_wandb_init(wandb_env):
    assert wandb.run is None
    with pytest.raises(wandb.Error, match=r"wandb\.init\(\)"):
        MetricsLogger()


def test_seed_name_is_an_alias():
    assert WandbMetricsLogger is MetricsLogger


def test_epoch_rows_use_wandb_key_names(spy, digits, make_model):
    fit(make_model(), digits, [MetricsLogger()])

    rows = spy.rows_with("epoch/epoch")
    assert [row["epoch/epoch"] for row in rows] == [0, 1]
    assert set(rows[0]) == {
        "epoch/loss",
        "epoch/accuracy",
        "epoch/val_loss",
        "epoch/val_accuracy",
        "epoch/epoch",
        "epoch/learning_rate",
    }
    assert rows[0]["epoch/learning_rate"] == pytest.approx(0.01)
    assert not spy.rows_with("batch/batch_step")


def test_epoch_rows_reach_the_run_file(offline_run, run_file, digits, make_model):
    history = fit(make_model(), digits, [MetricsLogger()]).history

    recorded = run_file(offline_run)
    rows = [row for row in recorded.history if "epoch/epoch" in row]
    assert [row["epoch/epoch"] for row in rows] == [0, 1]
    assert [row["epoch/val_loss"] for row in rows] == pytest.approx(history["val_loss"])


def test_epoch_metrics_are_plotted_against_epoch(spy, run_file, offline_run, digits, make_model):
    fit(make_model(), digits, [MetricsLogger()])

    defined = {args[0]: kwargs.get("step_metric") for args, kwargs in spy.calls["define_metric"]}
    assert defined == {"epoch/epoch": None, "epoch/*": "epoch/epoch"}
    recorded = run_file(offline_run)
    assert {(m.glob_name, m.step_metric) for m in recorded.metrics if m.glob_name} == {
        ("epoch/*", "epoch/epoch")
    }


def rows_with(rows: list[dict], key: str) -> list[dict]:
    return [row for row in rows if key in row]


def test_batch_logging_logs_every_batch_against_batch_step(
    spy, run_file, offline_run, digits, make_model
):
    fit(make_model(), digits, [MetricsLogger(log_freq="batch")])

    history = run_file(offline_run).history
    rows = rows_with(history, "batch/batch_step")
    assert [row["batch/batch_step"] for row in rows] == list(
        range(EPOCHS * steps_per_epoch(digits))
    )
    assert {key for key in rows[0] if not key.startswith("_")} == {
        "batch/loss",
        "batch/accuracy",
        "batch/batch_step",
        "batch/learning_rate",
    }
    defined = {args[0]: kwargs.get("step_metric") for args, kwargs in spy.calls["define_metric"]}
    assert defined["batch/*"] == "batch/batch_step"
    assert len(rows_with(history, "epoch/epoch")) == EPOCHS


def test_batch_rows_are_logged_in_order_before_fit_returns(
    run_file, offline_run, digits, make_model
):
    logger = MetricsLogger(log_freq="batch")
    fit(make_model(), digits, [logger])
    assert logger._writer is None  # closed: every row was handed to W&B inside fit

    history = run_file(offline_run).history
    steps = [row.get("batch/batch_step", row.get("epoch/epoch")) for row in history]
    per_epoch = steps_per_epoch(digits)
    expected = list(range(per_epoch)) + [0] + list(range(per_epoch, 2 * per_epoch)) + [1]
    assert steps == expected
    # One history row per call, numbered as `run.log` numbers them.
    assert [row["_step"] for row in history] == list(range(len(history)))


def test_integer_log_freq_logs_every_nth_batch(run_file, offline_run, digits, make_model):
    fit(make_model(), digits, [MetricsLogger(log_freq=4)], epochs=1)

    rows = rows_with(run_file(offline_run).history, "batch/batch_step")
    logged_batches = [b for b in range(steps_per_epoch(digits)) if b % 4 == 0]
    assert [row["batch/batch_step"] for row in rows] == [4 * i for i in range(len(logged_batches))]


def test_batch_rows_fall_back_to_run_log_where_run_internals_differ(offline_run):
    class LogOnlyRun:
        """A run object that has `log` and nothing else W&B's `Run` has."""

        def __init__(self) -> None:
            self.rows = []

        def log(self, row):
            self.rows.append(row)
            offline_run.log(row)

    run = LogOnlyRun()
    writer = HistoryWriter(run)
    for step in range(5):
        writer.log({"batch/batch_step": step, "batch/loss": lambda: 0.5})
    writer.close()
    assert run.rows == [{"batch/batch_step": step, "batch/loss": 0.5} for step in range(5)]


def test_writer_publishes_on_the_callers_thread_once_enough_rows_wait(offline_run):
    published = []

    class LogOnlyRun:
        def log(self, row):
            published.append((threading.current_thread(), row))
            offline_run.log(row)

    threads_before = threading.active_count()
    writer = HistoryWriter(LogOnlyRun(), max_rows=3)
    writer.log({"batch/batch_step": 0})
    writer.log({"batch/batch_step": 1})
    assert published == []
    writer.log({"batch/batch_step": 2})
    assert [row for _, row in published] == [{"batch/batch_step": step} for step in range(3)]
    assert {thread for thread, _ in published} == {threading.current_thread()}
    writer.log({"batch/batch_step": 3})
    writer.close()
    assert [row["batch/batch_step"] for _, row in published] == [0, 1, 2, 3]
    assert threading.active_count() == threads_before


def test_epoch_logging_leaves_keras_free_to_dispatch_batches_asynchronously(offline_run):
    assert is_default(MetricsLogger().on_train_batch_end)
    assert not is_default(MetricsLogger(log_freq="batch").on_train_batch_end)


@pytest.mark.parametrize("log_freq", ["often", 0, -3, 1.5, True])
def test_rejects_log_freq_that_is_not_epoch_batch_or_positive_int(offline_run, log_freq):
    with pytest.raises(ValueError, match="log_freq"):
        MetricsLogger(log_freq=log_freq)


def test_learning_rate_follows_schedule(run_file, offline_run, digits, make_model):
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=3, decay_rate=0.5)
    fit(make_model(learning_rate=schedule), digits, [MetricsLogger(log_freq="batch")], epochs=1)

    history = run_file(offline_run).history
    batch_rates = [row["batch/learning_rate"] for row in rows_with(history, "batch/batch_step")]
    expected = [float(schedule(step + 1)) for step in range(steps_per_epoch(digits))]
    assert batch_rates == pytest.approx(expected)
    (epoch_row,) = rows_with(history, "epoch/epoch")
    assert epoch_row["epoch/learning_rate"] == pytest.approx(expected[-1])


class StepwiseSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A schedule that is right for one step, but reduces a vector of steps to one value."""

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        return 0.1 / keras.ops.sqrt(keras.ops.sum(keras.ops.square(step)) + 1.0)

    def get_config(self):
        return {}


def test_learning_rate_of_a_schedule_that_takes_one_step_at_a_time(
    run_file, offline_run, digits, make_model
):
    fit(make_model(learning_rate=StepwiseSchedule()), digits, [MetricsLogger(log_freq="batch")])

    rows = rows_with(run_file(offline_run).history, "batch/batch_step")
    steps = range(1, EPOCHS * steps_per_epoch(digits) + 1)
    expected = [0.1 / ((step * step + 1.0) ** 0.5) for step in steps]
    assert [row["batch/learning_rate"] for row in rows] == pytest.approx(expected)


def test_epoch_logging_follows_schedule_by_optimizer_steps(spy, digits, make_model):
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=3, decay_rate=0.5)
    fit(make_model(learning_rate=schedule), digits, [MetricsLogger()], epochs=2)

    per_epoch = steps_per_epoch(digits)
    rates = [row["epoch/learning_rate"] for row in spy.rows_with("epoch/epoch")]
    assert rates == pytest.approx([float(schedule(per_epoch)), float(schedule(2 * per_epoch))])


def test_learning_rate_is_right_after_resume(spy, digits, make_model):
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=3, decay_rate=0.5)
    per_epoch = steps_per_epoch(digits)
    logger = MetricsLogger(initial_global_step=per_epoch * 2)
    fit(make_model(learning_rate=schedule), digits, [logger], epochs=3, initial_epoch=2)

    (row,) = spy.rows_with("epoch/epoch")
    assert row["epoch/epoch"] == 2
    assert row["epoch/learning_rate"] == pytest.approx(float(schedule(3 * per_epoch)))


def test_learning_rate_change_by_another_callback_is_logged(spy, digits, make_model):
    halve = keras.callbacks.LearningRateScheduler(lambda epoch, lr: 0.01 / (2**epoch))
    fit(make_model(), digits, [halve, MetricsLogger()])

    rates = [row["epoch/learning_rate"] for row in spy.rows_with("epoch/epoch")]
    assert rates == pytest.approx([0.01, 0.005])


class Warmup(keras.callbacks.Callback):
    """Sets the learning rate before every batch, half through the setter, half by `assign`."""

    def on_train_batch_begin(self, batch, logs=None):
        value = 0.001 * (batch + 1)
        if batch % 2:
            self.model.optimizer.learning_rate = value
        else:
            self.model.optimizer.learning_rate.assign(value)


def test_learning_rate_set_before_every_batch_is_logged_for_every_batch(
    run_file, offline_run, digits, make_model
):
    model = make_model()
    fit(model, digits, [Warmup(), MetricsLogger(log_freq="batch")], epochs=1)

    rows = rows_with(run_file(offline_run).history, "batch/batch_step")
    expected = [0.001 * (batch + 1) for batch in range(steps_per_epoch(digits))]
    assert [row["batch/learning_rate"] for row in rows] == pytest.approx(expected)
    # The logger's watch on the variable's assignments ends with `fit`.
    assert not set(vars(model.optimizer.learning_rate)) & {"assign", "assign_add", "assign_sub"}


def test_logger_can_be_deep_copied_for_keras_tuner_trials(
    run_file, offline_run, digits, make_model
):
    logger = MetricsLogger(log_freq="batch")
    fit(make_model(), digits, [copy.deepcopy(logger)], epochs=1)
    fit(make_model(), digits, [copy.deepcopy(logger)], epochs=1)

    history = run_file(offline_run).history
    assert len(rows_with(history, "epoch/epoch")) == 2
    assert len(rows_with(history, "batch/batch_step")) == 2 * steps_per_epoch(digits)


def test_works_in_disabled_mode(wandb_env, digits, make_model):
    wandb.init(mode="disabled")
    history = fit(make_model(), digits, [MetricsLogger(log_freq="batch")], epochs=1)
    assert len(history.history["loss"]) == 1
