"""Asynchronous successive halving (ASHA), as optuna's `SuccessiveHalvingPruner` does it."""

from __future__ import annotations

import optuna

from ktsweep.service.search.stopping.optuna_pruner_rule import OptunaPrunerRule


class AshaStoppingRule(OptunaPrunerRule):
    """Stops a trial that is not in the top `1/eta` of the trials that reached its rung.

    Rungs are the steps `min_iter * eta**(min_early_stopping_rate + k)`. When a trial reaches a
    rung, its value there is compared with every other trial's value at that rung (running or
    finished, reached so far); it continues only if it ranks in the top `1/eta`. No trial waits
    for others, which is what makes it asynchronous.

    Args:
        metric: Name of the metric.
        min_iter: Step of the first rung. Default 1.
        eta: Reduction factor: `1/eta` of the trials pass each rung. Default 3.
        min_early_stopping_rate: Skips the first rungs. Default 0.
        maximize: Whether larger values are better. Default False.
    """

    def __init__(
        self,
        metric: str,
        min_iter: int = 1,
        eta: int = 3,
        min_early_stopping_rate: int = 0,
        maximize: bool = False,
    ):
        pruner = optuna.pruners.SuccessiveHalvingPruner(
            min_resource=min_iter,
            reduction_factor=eta,
            min_early_stopping_rate=min_early_stopping_rate,
        )
        super().__init__(pruner, metric, maximize)
