"""The median stopping rule, as optuna's `MedianPruner` does it."""

from __future__ import annotations

import optuna

from ktsweep.service.search.stopping.optuna_pruner_rule import OptunaPrunerRule


class MedianStoppingRule(OptunaPrunerRule):
    """Stops a trial whose best value so far is worse than the median of completed trials at
    the same step.

    Acts only after `n_startup_trials` trials have completed, and on a trial only after
    `n_warmup_steps` steps, every `interval_steps` steps.

    Args:
        metric: Name of the metric.
        n_startup_trials: Completed trials needed before any stop. Default 5.
        n_warmup_steps: Steps a trial runs before it can be stopped. Default 0.
        interval_steps: Judge every this many steps. Default 1.
        n_min_trials: Completed trials that must have reported the step. Default 1.
        maximize: Whether larger values are better. Default False.
    """

    def __init__(
        self,
        metric: str,
        n_startup_trials: int = 5,
        n_warmup_steps: int = 0,
        interval_steps: int = 1,
        n_min_trials: int = 1,
        maximize: bool = False,
    ):
        pruner = optuna.pruners.MedianPruner(
            n_startup_trials=n_startup_trials,
            n_warmup_steps=n_warmup_steps,
            interval_steps=interval_steps,
            n_min_trials=n_min_trials,
        )
        super().__init__(pruner, metric, maximize)
