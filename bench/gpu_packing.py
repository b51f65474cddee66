"""GPU packing: 8 small-model trials sharing one GPU (`gpu: 0.125`) vs one at a time.

Each trial trains a 784-256-256-10 MLP on random MNIST-shaped data for a fixed number of steps;
the script prints the aggregate training throughput (samples/s) of both runs and their ratio.

In the same run it measures the machine's own ceiling, the peer: the same model and data in
plain Python processes (Keras `fit` alone: no tuner, no Ray, no ktsweep), first one process,
then `--trials` processes at once, each told to take only its share of GPU memory the way
ktsweep tells its trials. ktsweep's packing gain divided by that one says what ktsweep itself
loses. On a machine without a GPU it says so and exits 0 (`--allow-cpu` runs it anyway, to
check the script).

    python bench/gpu_packing.py [--trials 8] [--epochs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

SAMPLES = 60_000

# This driver builds the model once to discover the search space; with JAX it must not
# preallocate most of the GPU's memory for itself, or the trials it starts have none left.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


def has_gpu() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    import ray

    ray.init(include_dashboard=False, log_to_driver=False)
    return ray.cluster_resources().get("GPU", 0) >= 1


def build(hp):
    import keras

    model = keras.Sequential(
        [
            keras.Input(shape=(784,)),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    lr = hp.Float("learning_rate", 1e-4, 1e-2, sampling="log")
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


class FitClock:
    """Keras callback that records when a trial's `fit` starts and ends, in a shared folder.

    A picklable class (not a closure) so it travels to the Ray workers with `search`'s kwargs.
    """

    def __new__(cls, folder: str):
        import keras

        class _FitClock(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.begin = time.time()

            def on_train_end(self, logs=None):
                path = os.path.join(folder, f"{os.getpid()}-{time.time_ns()}.json")
                with open(path, "w") as file:
                    json.dump({"begin": self.begin, "end": time.time()}, file)

        return _FitClock()


def run(directory: str, trials: int, epochs: int, parallel: int, gpu: float) -> dict[str, float]:
    """Runs the search; returns samples/s over the whole search and over the time spent in `fit`."""
    import keras_tuner as kt
    import numpy as np

    from ktsweep.worker import distribute

    clock_dir = os.path.join(directory, "fit-clock")
    os.makedirs(clock_dir)
    rng = np.random.default_rng(0)
    x = rng.random((SAMPLES, 784), dtype=np.float32)
    y = rng.integers(0, 10, SAMPLES)
    tuner = kt.RandomSearch(build, objective="loss", max_trials=trials, seed=1, directory=directory)
    resources = {"cpu": 1, "gpu": gpu} if gpu else {"cpu": 1}
    distribute(tuner, parallel_trials=parallel, resources_per_trial=resources)
    start = time.perf_counter()
    tuner.search(x, y, epochs=epochs, batch_size=128, verbose=0, callbacks=[FitClock(clock_dir)])
    makespan = time.perf_counter() - start
    windows = []
    for name in os.listdir(clock_dir):
        with open(os.path.join(clock_dir, name)) as file:
            clock = json.load(file)
        windows.append((clock["begin"], clock["end"]))
    if len(windows) != trials:
        raise RuntimeError(f"{len(windows)} of {trials} trials finished fit; see the log above")
    samples = trials * epochs * SAMPLES
    return {"search": samples / makespan, "fit": samples / _covered_seconds(windows)}


def _covered_seconds(windows: list[tuple[float, float]]) -> float:
    """Seconds during which at least one trial was inside `fit` (the union of the windows)."""
    covered, reach = 0.0, float("-inf")
    for begin, end in sorted(windows):
        if end > reach:
            covered += end - max(begin, reach)
            reach = end
    return covered


def plain_fit(epochs: int, share: float, out: str) -> None:
    """One plain process: the same model and data, `fit` alone; writes its fit window to `out`."""
    from ktsweep.worker.resources import gpu_share_env

    os.environ.update(gpu_share_env(share))  # before Keras (and JAX) are imported
    import keras_tuner as kt
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.random((SAMPLES, 784), dtype=np.float32)
    y = rng.integers(0, 10, SAMPLES)
    hp = kt.HyperParameters()
    hp.Fixed("learning_rate", 1e-3)
    model = build(hp)
    begin = time.time()
    model.fit(x, y, epochs=epochs, batch_size=128, verbose=0)
    with open(out, "w") as file:
        json.dump({"begin": begin, "end": time.time()}, file)


def run_plain(directory: str, processes: int, epochs: int, share: float) -> dict[str, float]:
    """`processes` plain processes at once; samples/s over the time any was inside `fit`."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    os.makedirs(directory)
    outs = [os.path.join(directory, f"{index}.json") for index in range(processes)]
    workers = [context.Process(target=plain_fit, args=(epochs, share, out)) for out in outs]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    windows = []
    for out in outs:
        if not os.path.exists(out):
            raise RuntimeError("a plain process did not finish its fit; see the log above")
        with open(out) as file:
            clock = json.load(file)
        windows.append((clock["begin"], clock["end"]))
    return {"fit": processes * epochs * SAMPLES / _covered_seconds(windows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument(
        "--allow-cpu", action="store_true", help="run without a GPU too (checks the script only)"
    )
    args = parser.parse_args()
    gpu = has_gpu()
    if not gpu and not args.allow_cpu:
        print(
            "gpu_packing: no GPU available on this machine (no nvidia-smi or no GPU in Ray); "
            "nothing to measure. Run it on a GPU node."
        )
        sys.exit(0)
    with tempfile.TemporaryDirectory() as root:
        share = 1.0 / args.trials if gpu else 0.0  # without a GPU: one CPU per trial
        one = run(os.path.join(root, "one"), args.trials, args.epochs, 1, 1.0 if gpu else 0.0)
        packed = run(os.path.join(root, "packed"), args.trials, args.epochs, args.trials, share)
        plain_one = run_plain(os.path.join(root, "plain-one"), 1, args.epochs, 1.0)
        plain_packed = run_plain(
            os.path.join(root, "plain-packed"), args.trials, args.epochs, 1.0 / args.trials
        )
    print(f"{'samples/s':28s} {'training (in fit)':>18s} {'whole search':>14s}")
    print(f"{'one trial at a time':28s} {one['fit']:18.0f} {one['search']:14.0f}")
    print(
        f"{f'{args.trials} trials on one GPU':28s} {packed['fit']:18.0f} {packed['search']:14.0f}"
    )
    print(
        f"packing gain: {packed['fit'] / one['fit']:.2f}x aggregate training throughput, "
        f"{packed['search'] / one['search']:.2f}x over the whole search "
        "(the latter counts each trial's fresh process start-up)"
    )
    plain_gain = plain_packed["fit"] / plain_one["fit"]
    print(
        f"plain processes (Keras alone): one {plain_one['fit']:.0f}, {args.trials} at once "
        f"{plain_packed['fit']:.0f} samples/s in fit: {plain_gain:.2f}x"
    )
    print(
        f"ktsweep's packing gain / plain processes' gain: "
        f"{packed['fit'] / one['fit'] / plain_gain:.2f}"
    )


if __name__ == "__main__":
    main()
