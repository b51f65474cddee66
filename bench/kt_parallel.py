"""Plain Keras Tuner vs `distribute(parallel_trials=2)`: the same 16-trial RandomSearch on digits.

Both runs use the same seed, so the oracle proposes the same 16 configurations; the script
prints each run's wall time, best score and the speedup. Ray starts (and its workers import
Keras) before the distributed run's clock starts, as in a long-lived cluster.

    python bench/kt_parallel.py [--trials 16] [--epochs 5] [--parallel 2] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras_tuner as kt  # noqa: E402
import ray  # noqa: E402

from ktsweep.examples.digits import build_model, load_data  # noqa: E402
from ktsweep.worker import distribute  # noqa: E402


def run(directory: str, trials: int, epochs: int, parallel: int | None) -> tuple[float, float]:
    data = load_data()
    tuner = kt.RandomSearch(
        build_model,
        objective="val_accuracy",
        max_trials=trials,
        seed=7,
        directory=directory,
        project_name="bench",
    )
    if parallel:
        distribute(tuner, parallel_trials=parallel)
    start = time.perf_counter()
    tuner.search(
        data["x"],
        data["y"],
        epochs=epochs,
        batch_size=32,
        validation_data=data["validation_data"],
        verbose=0,
    )
    seconds = time.perf_counter() - start
    return seconds, tuner.oracle.get_best_trials(1)[0].score


def warm_up(parallel: int) -> None:
    """Start Ray and let each worker import Keras once (not part of either measurement)."""
    ray.init(num_cpus=parallel, include_dashboard=False, log_to_driver=False)

    @ray.remote
    def import_keras() -> int:
        import keras_tuner  # noqa: F401

        time.sleep(1.0)  # hold the CPU so the next call lands on another worker
        return os.getpid()

    ray.get([import_keras.remote() for _ in range(parallel)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument(
        "--repeats", type=int, default=1, help="alternate plain and distributed runs this often"
    )
    args = parser.parse_args()
    plain, dist = [], []
    with tempfile.TemporaryDirectory() as root:
        warm_up(args.parallel)
        for repeat in range(args.repeats):
            # Alternate which goes first, so a change in the machine's load hits both alike.
            order = ["plain", "dist"] if repeat % 2 == 0 else ["dist", "plain"]
            for kind in order:
                folder = os.path.join(root, f"{kind}-{repeat}")
                if kind == "plain":
                    plain.append(run(folder, args.trials, args.epochs, None))
                else:
                    dist.append(run(folder, args.trials, args.epochs, args.parallel))
    plain_s = statistics.median(seconds for seconds, _ in plain)
    dist_s = statistics.median(seconds for seconds, _ in dist)
    print(
        f"{args.trials} trials x {args.epochs} epochs, RandomSearch on digits, os.cpu_count()="
        f"{os.cpu_count()}, {args.repeats} alternating repeat(s), medians"
    )
    print(
        f"plain Keras Tuner:             {plain_s:7.1f} s  best val_accuracy {plain[0][1]:.4f}  "
        f"runs: {', '.join(f'{seconds:.1f}' for seconds, _ in plain)}"
    )
    print(
        f"distribute(parallel_trials={args.parallel}): {dist_s:7.1f} s  "
        f"best val_accuracy {dist[0][1]:.4f}  runs: {', '.join(f'{s:.1f}' for s, _ in dist)}"
    )
    print(f"speedup: {plain_s / dist_s:.2f}x")


if __name__ == "__main__":
    main()
