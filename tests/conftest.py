"""Shared test settings: W&B offline and quiet, TensorFlow quiet."""

import os

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_CONSOLE", "off")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
