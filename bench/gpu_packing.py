"""GPU packing: 8 small-model trials sharing one GPU (`gpu: 0.125`) vs one at a time.

Each trial trains a 784-256-256-10 MLP on random MNIST-shaped data for a fixed number of steps;
the script prints the aggregate training throughput (samples/s) of both runs and their ratio.
On a machine without a GPU it says so and exits 0.

    python bench/gpu_packing.py [--trials 8] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

SAMPLES = 60_000


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
    model.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", ["accuracy"])
    return model


def run(directory: str, trials: int, epochs: int, parallel: int, gpu: float) -> float:
    import keras_tuner as kt
    import numpy as np

    from worker import distribute

    rng = np.random.default_rng(0)
    x = rng.random((SAMPLES, 784), dtype=np.float32)
    y = rng.integers(0, 10, SAMPLES)
    tuner = kt.RandomSearch(build, objective="loss", max_trials=trials, seed=1, directory=directory)
    distribute(tuner, parallel_trials=parallel, resources_per_trial={"cpu": 1, "gpu": gpu})
    start = time.perf_counter()
    tuner.search(x, y, epochs=epochs, batch_size=128, verbose=0)
    return trials * epochs * SAMPLES / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    if not has_gpu():
        print(
            "gpu_packing: no GPU available on this machine (no nvidia-smi or no GPU in Ray); "
            "nothing to measure. Run it on a GPU node."
        )
        sys.exit(0)
    with tempfile.TemporaryDirectory() as root:
        one = run(os.path.join(root, "one"), args.trials, args.epochs, 1, 1.0)
        packed = run(
            os.path.join(root, "packed"), args.trials, args.epochs, args.trials, 1.0 / args.trials
        )
    print(f"one trial at a time: {one:12.0f} samples/s")
    print(f"{args.trials} trials on one GPU:  {packed:12.0f} samples/s")
    print(f"packing gain: {packed / one:.2f}x")


if __name__ == "__main__":
    main()
