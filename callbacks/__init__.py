"""Keras callbacks that log training to Weights & Biases, on every Keras 3 backend.

`MetricsLogger` logs metrics and the learning rate, `ModelCheckpoint` saves
checkpoints as W&B model artifacts, `EvalCallback` (and the ready-made
`ClassificationEvalCallback`) logs prediction tables. The `Wandb*` names are aliases that match
`wandb.integration.keras`, so migrating a script is an import change.
"""

from callbacks.classification_eval_callback import ClassificationEvalCallback
from callbacks.eval_callback import EvalCallback
from callbacks.metrics_logger import MetricsLogger
from callbacks.model_checkpoint import ModelCheckpoint

WandbMetricsLogger = MetricsLogger
WandbModelCheckpoint = ModelCheckpoint
WandbEvalCallback = EvalCallback

__all__ = [
    "ClassificationEvalCallback",
    "EvalCallback",
    "WandbEvalCallback",
    "MetricsLogger",
    "ModelCheckpoint",
    "WandbMetricsLogger",
    "WandbModelCheckpoint",
]
