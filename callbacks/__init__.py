"""Keras callbacks that log training to Weights & Biases, on every Keras 3 backend.

`MetricsLogger` logs metrics and the learning rate, `ModelCheckpoint` saves
checkpoints as W&B model artifacts, `EvalCallback` (and the ready-made
`ClassificationEvalCallback`) logs prediction tables, and `WandbCallback` is the
legacy all-in-one callback (`ktsweep.callbacks.legacy` runs old scripts unchanged). The
`Wandb*` names are aliases that match `wandb.integration.keras`, so migrating a
script is an import change.
"""

from ktsweep.callbacks.classification_eval_callback import ClassificationEvalCallback
from ktsweep.callbacks.eval_callback import EvalCallback
from ktsweep.callbacks.metrics_logger import MetricsLogger
from ktsweep.callbacks.model_checkpoint import ModelCheckpoint
from ktsweep.callbacks.wandb_callback import WandbCallback

WandbMetricsLogger = MetricsLogger
WandbModelCheckpoint = ModelCheckpoint
WandbEvalCallback = EvalCallback

__all__ = [
    "ClassificationEvalCallback",
    "EvalCallback",
    "WandbCallback",
    "WandbEvalCallback",
    "MetricsLogger",
    "ModelCheckpoint",
    "WandbMetricsLogger",
    "WandbModelCheckpoint",
]
