"""The Optuna internals `OptunaStudySearch` relies on.

Contract: tests/compat/test_optuna.py.

NSGA-II groups trials into generations by a system attribute each trial carries, which the
sampler sets when it asks for the trial. A study rebuilt from the sweep's trials (after each
trial, and after a controller restart) must carry the same attribute on the trials it adds,
and Optuna names its key only in a private method.
"""

from __future__ import annotations

import optuna


def nsga2_generation_key() -> str:
    """The system attribute holding a trial's NSGA-II generation (an int, from 0)."""
    return optuna.samplers.NSGAIISampler._get_generation_key()
