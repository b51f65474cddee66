"""How much per-batch W&B logging slows down `fit`: no callback vs ours vs wandb's.

Trains the digits MLP (64 units, sklearn's bundled digits, batch size 32) for a few
epochs under three conditions in one process and one offline W&B run:

- no callback,
- `ktsweep.callbacks.MetricsLogger(log_freq="batch")`,
- `wandb.integration.keras.WandbMetricsLogger(log_freq="batch")` (wandb's own),

repeating them interleaved in a shuffled order, and prints the median `fit` time of
each and the ratios to no callback (ratio of medians, and the median of each round's
ratio to that round's no-callback time).

Run from the repository root:

    python bench/callbacks_overhead.py [--repeats 15] [--epochs 5]
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import tempfile
import time

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import wandb  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from ktsweep.callbacks import MetricsLogger  # noqa: E402


def load_data() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype("float32"), y.astype("int32")


def build_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def timed_fit(x, y, epochs: int, batch_size: int, callbacks: list) -> float:
    model = build_model()
    model.fit(x[:batch_size], y[:batch_size], epochs=1, verbose=0)  # trace outside the timing
    # Each fit leaves its model behind for the cycle collector; collect it here, outside the
    # timing, or a full collection of TensorFlow's large heap (about 0.4 s) lands in a random
    # later fit of whichever condition happens to run then.
    gc.collect()
    start = time.perf_counter()
    model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=callbacks)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    # wandb's callbacks import TensorFlow; ours don't. Import theirs only here.
    from wandb.integration.keras import WandbMetricsLogger

    conditions = {
        "no callback": lambda: [],
        "ktsweep.callbacks.MetricsLogger": lambda: [MetricsLogger(log_freq="batch")],
        "wandb WandbMetricsLogger": lambda: [WandbMetricsLogger(log_freq="batch")],
    }
    x, y = load_data()
    times: dict[str, list[float]] = {name: [] for name in conditions}
    order = list(conditions)
    shuffle = random.Random(0)
    with tempfile.TemporaryDirectory() as wandb_dir:
        run = wandb.init(project="callbacks-overhead", dir=wandb_dir)
        for name in order:  # one untimed warm-up round
            timed_fit(x, y, 1, args.batch_size, conditions[name]())
        for _ in range(args.repeats):
            shuffle.shuffle(order)
            for name in order:
                times[name].append(
                    timed_fit(x, y, args.epochs, args.batch_size, conditions[name]())
                )
        run.finish()

    steps = args.epochs * -(-len(x) // args.batch_size)
    baseline = statistics.median(times["no callback"])
    print(
        f"keras {keras.__version__} ({keras.backend.backend()}), wandb {wandb.__version__}, "
        f"{os.cpu_count()} CPUs; {args.epochs} epochs x {steps // args.epochs} batches, "
        f"{args.repeats} interleaved repeats, medians"
    )
    print(f"{'condition':26s} {'median':>9s} {'[min-max]':17s} ratio  paired ratio")
    for name in conditions:
        median = statistics.median(times[name])
        spread = f"[{min(times[name]):.3f}-{max(times[name]):.3f}]"
        # Each round's ratio to that round's no-callback fit cancels slow drifts in machine load.
        paired = statistics.median(
            t / n for t, n in zip(times[name], times["no callback"], strict=True)
        )
        print(f"{name:26s} {median:7.3f} s {spread:17s} {median / baseline:.3f}  {paired:.3f}")
    ours = statistics.median(times["ktsweep.callbacks.MetricsLogger"]) / baseline
    theirs = statistics.median(times["wandb WandbMetricsLogger"]) / baseline
    print(f"overhead: ours {100 * (ours - 1):+.1f}%, wandb's {100 * (theirs - 1):+.1f}%")


if __name__ == "__main__":
    main()
