"""Keras callbacks that log training to Weights & Biases, on every Keras 3 backend.

`MetricsLogger` logs metrics and the learning rate, `ModelCheckpoint` saves
checkpoints as W&B model artifacts. The `Wandb*` names are aliases that match
`wandb.integration.keras`, so migrating a script is an import change.
"""

from callbacks.metrics_logger import MetricsLogger
from callbacks.model_checkpoint import ModelCheckpoint

WandbMetricsLogger = MetricsLogger
WandbModelCheckpoint = ModelCheckpoint

__all__ = [
    "MetricsLogger",
    "ModelCheckpoint",
    "WandbMetricsLogger",
    "WandbModelCheckpoint",
]
