"""Several objectives: the hypervolume of `custom` (Optuna's multi-objective TPE) against random
search, cold and warm-started.

Each sweep runs its trials one at a time with ktsweep's own search-method classes (no
controller, no Ray), fed each trial's objective values as a finished trial's metrics. After
the same number of trials, the hypervolume of its trials (both objectives minimised, against a
fixed reference point) is computed exactly; the median over the seeds is reported.

- `random`: ktsweep's random search over the same parameters.
- `custom`: `method: custom`, `scheduler: {engine: optuna}`, `metrics: [f1, f2]` (Optuna's
  multi-objective TPE, 10 random trials first: see `OptunaStudySearch`).
- `custom, warm`: the same, warm-started (`prior_sweeps`) with the trials of an earlier sweep:
  the first 100 trials of the cold `custom` sweep of the next seed (seed 9 takes seed 0's);
  with fewer trials than that, all of them. Prior trials are learned only; the hypervolume
  counts the new sweep's own trials.

Problems:

- ZDT1 (10 variables in [0, 1]) and DTLZ2 with 2 objectives (11 variables, k = 10), standard
  synthetic fronts; reference points (1.1, 11), beyond any point of ZDT1's space, and (2, 2).
- Digits: the MLP of `ktsweep.examples.digits` (units 2..128, dropout, learning rate), 5 epochs
  per trial, objectives 1 - val_accuracy and the model's parameter count / 9610 (its largest),
  reference point (1, 1.1). A real Keras fit per trial, so fewer trials and seeds.

"Trials to random's hypervolume": per seed, the first trial after which a sweep's hypervolume
reaches what the random sweep of that seed had at the end; "never" when it does not.

Usage: python bench/multi_objective.py [synthetic|digits|all] [--quick] [--trials N] [--seeds N]
  --quick: synthetic 150 trials x 10 seeds, digits 12 trials x 3 seeds
  default: synthetic 200 trials x 10 seeds, digits 30 trials x 10 seeds
  --trials, --seeds: override both parts' (seeds 0..N-1)
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from ktsweep.service.search import TrialRecord, make_search_method  # noqa: E402
from ktsweep.service.search.warm_start import warm_start  # noqa: E402
from ktsweep.service.spec import parse_spec  # noqa: E402

Point = Sequence[float]


def hypervolume(points: Sequence[Point], reference: Point) -> float:
    """The area dominated by `points` (two objectives, both minimised) and bounded by
    `reference`: exact, by sweeping the points in order of the first objective."""
    inside = sorted((p[0], p[1]) for p in points if p[0] < reference[0] and p[1] < reference[1])
    area, lowest = 0.0, reference[1]
    for first, second in inside:
        if second < lowest:
            area += (reference[0] - first) * (lowest - second)
            lowest = second
    return area


def hypervolume_curve(points: Sequence[Point], reference: Point) -> list[float]:
    """The hypervolume after each trial (`[0]`: after the first)."""
    return [hypervolume(points[: n + 1], reference) for n in range(len(points))]


def zdt1(config: dict[str, float]) -> tuple[float, float]:
    x = [config[f"x{i}"] for i in range(ZDT1_VARIABLES)]
    g = 1 + 9 * sum(x[1:]) / (len(x) - 1)
    return x[0], g * (1 - math.sqrt(x[0] / g))


def dtlz2(config: dict[str, float]) -> tuple[float, float]:
    x = [config[f"x{i}"] for i in range(DTLZ2_VARIABLES)]
    g = sum((value - 0.5) ** 2 for value in x[1:])
    angle = x[0] * math.pi / 2
    return (1 + g) * math.cos(angle), (1 + g) * math.sin(angle)


ZDT1_VARIABLES = 10
DTLZ2_VARIABLES = 11  # 2 objectives, k = 10
SYNTHETIC: dict[str, tuple[Callable[[dict], tuple[float, float]], int, tuple[float, float]]] = {
    "ZDT1": (zdt1, ZDT1_VARIABLES, (1.1, 11.0)),
    "DTLZ2": (dtlz2, DTLZ2_VARIABLES, (2.0, 2.0)),
}
# The earlier sweep a warm start learns from: this many trials of another seed's cold sweep.
PRIOR_TRIALS = 100
METHODS = ("random", "custom", "custom, warm")


def sweep_spec(method: str, parameters: dict[str, Any], seed: int, **extra):
    spec = {
        "method": method,
        "parameters": parameters,
        "seed": seed,
        "program": "train.py",  # a program sweep: no hypermodel for the space to import
        **extra,
    }
    if method == "custom":
        spec["scheduler"] = {"engine": "optuna"}
        spec["metrics"] = [{"name": "f1", "goal": "minimize"}, {"name": "f2", "goal": "minimize"}]
    return parse_spec(spec)


def run_sweep(
    method: str,
    parameters: dict[str, Any],
    objectives: Callable[[dict], Point],
    seed: int,
    trials: int,
    prior: list[TrialRecord] | None = None,
) -> list[TrialRecord]:
    """`trials` trials of a sweep, one at a time; each record holds its objective values."""
    spec = sweep_spec("custom" if method != "random" else "random", parameters, seed)
    search = make_search_method(spec)
    if prior is not None:
        warm_start(search, spec, prior)
    records = []
    for number in range(trials):
        config = search.suggest(number, [])
        f1, f2 = objectives(config)
        record = TrialRecord(number, config, "completed", metrics={"f1": f1, "f2": f2})
        search.observe(record)
        records.append(record)
    return records


def points_of(records: list[TrialRecord]) -> list[Point]:
    return [(record.metrics["f1"], record.metrics["f2"]) for record in records]


def trials_to_reach(curve: list[float], target: float) -> int | None:
    return next((n + 1 for n, value in enumerate(curve) if value >= target), None)


def compare(
    name: str,
    parameters: dict[str, Any],
    objectives: Callable[[dict], Point],
    reference: Point,
    seeds: range,
    trials: int,
) -> dict[str, Any]:
    """Runs random, custom and warm-started custom for every seed and prints one table row
    per method; returns the medians."""
    started = time.perf_counter()
    runs: dict[str, dict[int, list[TrialRecord]]] = {method: {} for method in METHODS}
    for seed in seeds:
        runs["random"][seed] = run_sweep("random", parameters, objectives, seed, trials)
        runs["custom"][seed] = run_sweep("custom", parameters, objectives, seed, trials)
    for seed in seeds:
        other = seeds[(seeds.index(seed) + 1) % len(seeds)]
        prior = runs["custom"][other][:PRIOR_TRIALS]
        runs["custom, warm"][seed] = run_sweep(
            "custom", parameters, objectives, seed, trials, prior=prior
        )
    curves = {
        method: {seed: hypervolume_curve(points_of(r), reference) for seed, r in by_seed.items()}
        for method, by_seed in runs.items()
    }
    finals = {method: [curves[method][seed][-1] for seed in seeds] for method in METHODS}
    medians = {method: statistics.median(values) for method, values in finals.items()}
    reach: dict[str, list[int | None]] = {
        method: [
            trials_to_reach(curves[method][seed], finals["random"][i])
            for i, seed in enumerate(seeds)
        ]
        for method in METHODS
    }
    elapsed = time.perf_counter() - started
    print(
        f"\n{name}: {trials} trials x {len(seeds)} seeds, reference point {reference} "
        f"({elapsed:.0f} s)"
    )
    print(
        f"{'method':14}{'median HV':>11}{'/ random':>10}{'- random':>10}"
        f"  trials to random's final HV (median, seeds that got there)"
    )
    for method in METHODS:
        needed = reach[method]
        reached = sorted(n for n in needed if n is not None)
        # Median over seeds, counting "never" as more than the budget.
        ordered = reached + [math.inf] * (len(needed) - len(reached))
        median_needed = statistics.median(ordered)
        shown = "never" if math.isinf(median_needed) else f"{median_needed:g}"
        reach_text = f"{shown} ({len(reached)}/{len(needed)})" if method != "random" else "-"
        print(
            f"{method:14}{medians[method]:11.4f}{medians[method] / medians['random']:10.3f}"
            f"{medians[method] - medians['random']:+10.4f}  {reach_text}",
            flush=True,
        )
    for method in METHODS[1:]:
        wins = sum(c > r for c, r in zip(finals[method], finals["random"], strict=True))
        print(f"{method} above random in {wins} of {len(seeds)} seeds")
    return medians


def run_synthetic(trials: int, seeds: range) -> None:
    for name, (objectives, variables, reference) in SYNTHETIC.items():
        parameters = {f"x{i}": {"min": 0.0, "max": 1.0} for i in range(variables)}
        compare(name, parameters, objectives, reference, seeds, trials)


DIGITS_EPOCHS = 5
DIGITS_MOST_PARAMETERS = 75 * 128 + 10  # the MLP's weights at 128 units
DIGITS_PARAMETERS = {
    "units": {"min": 2, "max": 128},
    "dropout": {"min": 0.0, "max": 0.5},
    "learning_rate": {"distribution": "log_uniform_values", "min": 1e-3, "max": 1e-1},
}


def digits_objectives() -> Callable[[dict], Point]:
    """Trains the digits MLP for a configuration: (1 - val_accuracy, parameters / most)."""
    import keras

    from ktsweep.examples.digits import build_model, load_data
    from ktsweep.worker import hyperparameters_for

    data = load_data()

    def objectives(config: dict) -> Point:
        keras.utils.set_random_seed(0)
        model = build_model(hyperparameters_for(config))
        history = model.fit(
            data["x"],
            data["y"],
            validation_data=data["validation_data"],
            batch_size=64,
            epochs=DIGITS_EPOCHS,
            verbose=0,
        )
        accuracy = float(history.history["val_accuracy"][-1])
        return 1.0 - accuracy, model.count_params() / DIGITS_MOST_PARAMETERS

    return objectives


def run_digits(trials: int, seeds: range) -> None:
    compare("digits MLP", DIGITS_PARAMETERS, digits_objectives(), (1.0, 1.1), seeds, trials)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", nargs="?", default="all", choices=["synthetic", "digits", "all"])
    parser.add_argument("--quick", action="store_true", help="fewer trials and seeds")
    parser.add_argument("--trials", type=int, help="trials per sweep")
    parser.add_argument("--seeds", type=int, help="seeds 0..N-1")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.part in ("synthetic", "all"):
        trials = args.trials or (150 if args.quick else 200)
        run_synthetic(trials, range(args.seeds or 10))
    if args.part in ("digits", "all"):
        trials = args.trials or (12 if args.quick else 30)
        run_digits(trials, range(args.seeds or (3 if args.quick else 10)))


if __name__ == "__main__":
    sys.exit(main())
