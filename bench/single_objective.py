"""Single objective against a published figure: Branin and Hartmann-6 after 25 trials.

The reference: Ax on W&B's sweeps reports Branin 0.442 +- 0.008 and Hartmann-6 -2.835 +- 0.121,
the best value after 25 trials, mean of 16 runs. Here each of ktsweep's methods runs 25 trials
on each function (minimised), one at a time, for seeds 0..9, and the median best value is set
against that figure and against `random`.

Methods are ktsweep's own search-method classes, fed the function's value of each trial as a
finished trial (no controller, no Ray): `random`, `bayes` (Optuna's Gaussian process where
PyTorch is installed, `GaussianProcessSearch`), `bayes (Keras Tuner)` (what `bayes` runs
without PyTorch: Keras Tuner's Gaussian-process oracle), `tpe` (Optuna's TPE) and `custom`
with `engine: optuna` (one objective: the same Gaussian process as `bayes`, TPE without
PyTorch). The peer row `optuna GPSampler` is a plain Optuna study with one default `GPSampler`
(seeded once, 10 random trials, over the functions' own bounds), for what the engine gets
outside ktsweep.

Usage: python bench/single_objective.py [--seeds N] [--first-seed S] [--methods NAME,...]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from search_efficiency import branin, hartmann6  # noqa: E402  (same folder)

from ktsweep.service.search import TrialRecord, make_search_method  # noqa: E402
from ktsweep.service.search.bayes_search import (  # noqa: E402
    KerasTunerBayesSearch,
    gp_sampler_available,
)
from ktsweep.service.spec import parse_spec  # noqa: E402

TRIALS = 25
# Ax on W&B's sweeps: best value after 25 trials, mean +- standard error of 16 runs.
PUBLISHED = {"branin": (0.442, 0.008), "hartmann6": (-2.835, 0.121)}
FUNCTIONS = {
    "branin": (branin, {"x1": (-5.0, 10.0), "x2": (0.0, 15.0)}, 0.397887),
    "hartmann6": (hartmann6, {f"x{i}": (0.0, 1.0) for i in range(1, 7)}, -3.32237),
}
METHODS = ("random", "bayes", "bayes (Keras Tuner)", "tpe", "custom", "optuna GPSampler")
NEEDS_TORCH = ("optuna GPSampler",)


def function_spec(method: str, bounds: dict[str, tuple[float, float]], seed: int):
    spec = {
        "method": method,
        "metric": {"name": "y", "goal": "minimize"},
        "parameters": {name: {"min": low, "max": high} for name, (low, high) in bounds.items()},
        "run_cap": TRIALS,
        "seed": seed,
        "program": "train.py",  # a program sweep: no hypermodel for the space to import
    }
    if method == "custom":
        spec["scheduler"] = {"engine": "optuna"}
    return parse_spec(spec)


def make_method(method: str, bounds, seed: int):
    if method == "bayes (Keras Tuner)":
        spec = function_spec("bayes", bounds, seed)
        return KerasTunerBayesSearch(spec, space=make_search_method(spec).space)
    return make_search_method(function_spec(method, bounds, seed))


def plain_gp_best(function, bounds, seed: int) -> float:
    """The best value of `function` in `TRIALS` trials of a plain Optuna study with GPSampler."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.GPSampler(seed=seed))
    for _ in range(TRIALS):
        trial = study.ask()
        config = {
            name: trial.suggest_float(name, low, high) for name, (low, high) in bounds.items()
        }
        study.tell(trial, function(config))
    return study.best_value


def best_after(method: str, function, bounds, seed: int) -> float:
    """The best value of `function` in `TRIALS` trials of `method`, run one at a time."""
    if method == "optuna GPSampler":
        return plain_gp_best(function, bounds, seed)
    search = make_method(method, bounds, seed)
    best = math.inf
    for number in range(TRIALS):
        config = search.suggest(number, [])
        value = function(config)
        best = min(best, value)
        history = [{"step": 1, "metrics": {"y": value}}]
        search.observe(TrialRecord(number, config, "completed", objective=value, history=history))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="how many seeds (default 10)")
    parser.add_argument("--first-seed", type=int, default=0, help="the first seed (default 0)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated")
    args = parser.parse_args()
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    methods = [m for m in args.methods.split(",") if m in METHODS]
    if not gp_sampler_available():
        methods = [m for m in methods if m not in NEEDS_TORCH]
    warnings.filterwarnings("ignore")  # scikit-learn's convergence notes from the bayes oracle
    print(f"median best value after {TRIALS} trials over {len(seeds)} seeds (lower is better)")
    header = f"{'function':10}{'method':>18}{'median':>10}{'mean':>10}{'Ax (W&B)':>16}"
    print(header + f"{'met':>5}{'vs Ax':>9}{'vs random':>11}{'seconds':>9}")
    for name, (function, bounds, optimum) in FUNCTIONS.items():
        published, error = PUBLISHED[name]
        random_median = statistics.median(
            best_after("random", function, bounds, seed) for seed in seeds
        )
        for method in methods:
            started = time.perf_counter()
            values = [best_after(method, function, bounds, seed) for seed in seeds]
            elapsed = time.perf_counter() - started
            median = statistics.median(values)
            met = "yes" if median <= published else "no"
            print(
                f"{name:10}{method:>18}{median:10.4f}{statistics.mean(values):10.4f}"
                f"{f'{published:.3f} +- {error:.3f}':>16}{met:>5}{median - published:+9.4f}"
                f"{median - random_median:+11.4f}{elapsed:9.0f}",
                flush=True,
            )
        print(f"{'':10}{'(optimum)':>18}{optimum:10.4f}")


if __name__ == "__main__":
    sys.exit(main())
