"""A W&B-sweep training script, unchanged from what a W&B agent would run.

It reads its hyperparameters from `wandb.config` and logs `val_accuracy` each epoch. Run it as
a ktsweep `program` sweep with `ktsweep run examples/wandb_program/sweep.yaml`.
"""

import keras
import wandb
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

defaults = {"units": 32, "learning_rate": 0.01, "epochs": 3}
run = wandb.init(config=defaults)
config = wandb.config

digits = load_digits()
x_train, x_val, y_train, y_val = train_test_split(
    digits.data / 16.0, digits.target, test_size=0.2, random_state=0, stratify=digits.target
)
model = keras.Sequential(
    [
        keras.Input(shape=(64,)),
        keras.layers.Dense(int(config.units), activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ]
)
model.compile(
    optimizer=keras.optimizers.Adam(float(config.learning_rate)),
    loss="sparse_categorical_crossentropy",
    metrics=["accuracy"],
)
for epoch in range(int(config.epochs)):
    history = model.fit(x_train, y_train, validation_data=(x_val, y_val), verbose=0)
    wandb.log(
        {
            "epoch": epoch + 1,
            "loss": history.history["loss"][-1],
            "val_accuracy": history.history["val_accuracy"][-1],
        }
    )
run.finish()
