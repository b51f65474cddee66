"""Search efficiency of ktsweep's methods and early-termination rules, side by side.

(a) Digits: the full random sweep (27 trials x 9 epochs) against the same sweep with `asha`
    early termination and against `method: hyperband`: best val_accuracy and total epochs.
    Trials train in this process (Keras, the digits MLP of `ktsweep.examples.digits`); a continued
    Hyperband trial trains on from its parent's model, as the worker does from its checkpoint.
(b) Branin and Hartmann-6 (minimised): median over 10 seeds of the best value after 30 trials,
    for random, bayes and tpe.

Usage: python bench/search_efficiency.py [digits|functions|all]
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from ktsweep.service.search import Suggestion, TrialRecord, make_search_method  # noqa: E402
from ktsweep.service.spec import parse_spec  # noqa: E402

TRIALS = 30
SEEDS = range(10)


def branin(c):
    x1, x2 = c["x1"], c["x2"]
    b, cc, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + cc * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


_A = [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8],
      [17, 8, 0.05, 10, 0.1, 14]]  # fmt: skip
_P = [[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
      [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]]  # fmt: skip
_ALPHA = [1.0, 1.2, 3.0, 3.2]


def hartmann6(c):
    x = [c[f"x{i}"] for i in range(1, 7)]
    total = 0.0
    for i in range(4):
        inner = sum(_A[i][j] * (x[j] - _P[i][j] * 1e-4) ** 2 for j in range(6))
        total += _ALPHA[i] * math.exp(-inner)
    return -total


FUNCTIONS = {
    "branin (min 0.398)": (branin, {"x1": (-5.0, 10.0), "x2": (0.0, 15.0)}),
    "hartmann6 (min -3.322)": (hartmann6, {f"x{i}": (0.0, 1.0) for i in range(1, 7)}),
}


def function_spec(method, bounds, seed):
    return parse_spec(
        {
            "method": method,
            "metric": {"name": "y", "goal": "minimize"},
            "parameters": {name: {"min": low, "max": high} for name, (low, high) in bounds.items()},
            "run_cap": TRIALS,
            "seed": seed,
            "trial": {"hypermodel": "bench.none:f", "data": "bench.none:g"},
        }
    )


def best_after(method, function, bounds, seed):
    search = make_search_method(function_spec(method, bounds, seed))
    best = math.inf
    for number in range(TRIALS):
        config = search.suggest(number, [])
        value = function(config)
        best = min(best, value)
        history = [{"step": 1, "metrics": {"y": value}}]
        search.observe(TrialRecord(number, config, "completed", objective=value, history=history))
    return best


def run_functions():
    methods = ("random", "bayes", "tpe")
    print(
        f"\n(b) median best value after {TRIALS} trials over {len(SEEDS)} seeds (lower is better)"
    )
    print(f"{'function':26}" + "".join(f"{m:>12}" for m in methods) + f"{'seconds':>10}")
    for name, (function, bounds) in FUNCTIONS.items():
        started = time.perf_counter()
        medians = [
            statistics.median(best_after(m, function, bounds, seed) for seed in SEEDS)
            for m in methods
        ]
        elapsed = time.perf_counter() - started
        print(f"{name:26}" + "".join(f"{v:12.4f}" for v in medians) + f"{elapsed:10.0f}")


DIGITS_EPOCHS = 9
DIGITS_TRIALS = 27


def digits_spec(method, early_terminate=None):
    spec = {
        "method": method,
        "metric": {"name": "val_accuracy", "goal": "maximize"},
        "parameters": {
            "units": {"values": [8, 16, 32, 64, 128]},
            "dropout": {"min": 0.0, "max": 0.5},
            "learning_rate": {"distribution": "log_uniform_values", "min": 1e-4, "max": 3e-2},
        },
        "run_cap": DIGITS_TRIALS,
        "seed": 11,
        "trial": {
            "hypermodel": "ktsweep.examples.digits:build_model",
            "data": "ktsweep.examples.digits:load_data",
            "fit": {"epochs": DIGITS_EPOCHS, "batch_size": 64},
        },
    }
    if early_terminate:
        spec["early_terminate"] = early_terminate
    return parse_spec(spec)


class _Stopper:
    """A Keras callback standing in for the worker's reporter: asks `should_stop` every epoch."""

    def __new__(cls, *args, **kwargs):
        import keras

        class Stopper(keras.callbacks.Callback):
            def __init__(self, search, record, records):
                super().__init__()
                self.search, self.record, self.records = search, record, records
                self.stopped = False

            def on_epoch_end(self, epoch, logs=None):
                metrics = {k: float(v) for k, v in (logs or {}).items()}
                self.record.history.append({"step": epoch + 1, "metrics": metrics})
                self.record.objective = metrics.get("val_accuracy")
                self.record.epochs = epoch + 1
                if self.search.should_stop(self.record, self.records):
                    self.stopped = True
                    self.model.stop_training = True

        return Stopper(*args, **kwargs)


def run_sweep(spec):
    """Runs a sweep's trials one at a time; returns (best val_accuracy, epochs trained, trials)."""
    import keras

    from ktsweep.examples.digits import build_model, load_data
    from ktsweep.worker import hyperparameters_for

    data = load_data()
    search = make_search_method(spec)
    records: list[TrialRecord] = []
    models: dict[int, keras.Model] = {}
    epochs_trained = 0
    while len(records) < (spec.run_cap or math.inf):
        suggestion = search.suggest(len(records), records)
        if suggestion is None:  # trials run one at a time, so nothing is left to wait for
            break
        if not isinstance(suggestion, Suggestion):
            suggestion = Suggestion(suggestion)
        number = len(records)
        record = TrialRecord(number, suggestion.hyperparameters, "running")
        records.append(record)
        initial = suggestion.initial_epoch or 0
        if suggestion.parent is not None:
            model = models[suggestion.parent]
        else:
            keras.utils.set_random_seed(number)
            model = build_model(hyperparameters_for(suggestion.hyperparameters))
        stopper = _Stopper(search, record, records)
        model.fit(
            data["x"], data["y"], validation_data=data["validation_data"], batch_size=64,
            epochs=suggestion.epochs or DIGITS_EPOCHS, initial_epoch=initial, verbose=0,
            callbacks=[stopper],
        )  # fmt: skip
        epochs_trained += len(record.history)
        models[number] = model
        record.state = "stopped" if stopper.stopped else "completed"
        search.observe(record)
    best = max(r.objective for r in records if r.objective is not None)
    return best, epochs_trained, len(records)


def run_digits():
    print(f"\n(a) digits MLP, {DIGITS_TRIALS} trials x up to {DIGITS_EPOCHS} epochs")
    print(f"{'sweep':34}{'best val_acc':>14}{'epochs':>8}{'trials':>8}{'of full':>9}")
    rows = [
        ("random (full sweep)", digits_spec("random")),
        ("random + asha (min_iter 1, eta 3)", digits_spec("random", {"type": "asha"})),
        ("hyperband (factor 3)", digits_spec("hyperband")),
    ]
    full = None
    for name, spec in rows:
        best, epochs, trials = run_sweep(spec)
        full = full or (best, epochs)
        print(
            f"{name:34}{best:14.4f}{epochs:8d}{trials:8d}{epochs / full[1]:9.2f}"
            f"   gap {100 * (full[0] - best):+.2f} pp"
        )


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    if which in ("functions", "all"):
        run_functions()
    if which in ("digits", "all"):
        run_digits()
