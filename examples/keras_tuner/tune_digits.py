"""A plain Keras Tuner script whose trials run in parallel on Ray: one line added.

Tunes the digits MLP (sklearn's bundled digits, no download) with Keras Tuner's `RandomSearch`
(or `--tuner hyperband`); `distribute` sends its trials to a local Ray (or the cluster at
`RAY_ADDRESS`), each with its own W&B run (offline unless you are logged in and pass
`--wandb-mode online`). Everything after `distribute(...)` is ordinary Keras Tuner.

    python examples/keras_tuner/tune_digits.py
    python examples/keras_tuner/tune_digits.py --tuner hyperband --parallel 2 --trials 8
"""

from __future__ import annotations

import argparse

import keras_tuner as kt

from ktsweep import distribute
from ktsweep.examples.digits import build_model, load_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tuner", choices=["random", "hyperband"], default="random")
    parser.add_argument("--trials", type=int, default=8, help="RandomSearch's max_trials")
    parser.add_argument("--epochs", type=int, default=5, help="epochs (Hyperband: max_epochs)")
    parser.add_argument("--parallel", type=int, default=2, help="trials at once")
    parser.add_argument("--directory", default="kt-digits", help="the tuner's folder")
    parser.add_argument("--wandb-mode", default="offline", choices=["offline", "online", "off"])
    args = parser.parse_args()

    if args.tuner == "random":
        tuner = kt.RandomSearch(
            build_model,
            objective="val_accuracy",
            max_trials=args.trials,
            seed=1,
            directory=args.directory,
            project_name="random",
        )
    else:
        tuner = kt.Hyperband(
            build_model,
            objective="val_accuracy",
            max_epochs=args.epochs,
            factor=3,
            seed=1,
            directory=args.directory,
            project_name="hyperband",
        )

    # The one added line: trials now run on Ray, `parallel` at a time.
    wandb = None if args.wandb_mode == "off" else {"project": "kt-digits", "mode": args.wandb_mode}
    distribute(tuner, parallel_trials=args.parallel, resources_per_trial={"cpu": 1}, wandb=wandb)

    data = load_data()
    tuner.search(
        data["x"],
        data["y"],
        epochs=args.epochs,
        validation_data=data["validation_data"],
        verbose=0,
    )
    tuner.results_summary(num_trials=3)
    best_hp = tuner.get_best_hyperparameters(1)[0]
    best_model = tuner.get_best_models(1)[0]
    x_val, y_val = data["validation_data"]
    _, accuracy = best_model.evaluate(x_val, y_val, verbose=0)
    print(f"best hyperparameters: {best_hp.values}")
    print(f"best model's val_accuracy: {accuracy:.4f}")


if __name__ == "__main__":
    main()
