"""Runs an optuna pruner on the sweep's metric histories (the base of asha and median)."""

from __future__ import annotations

import logging

import optuna

from ktsweep.service.search.base import TrialRecord, metric_history
from ktsweep.service.search.stopping.base import StoppingRule

log = logging.getLogger(__name__)


class OptunaPrunerRule(StoppingRule):
    """Mirrors the sweep's trials in an in-memory optuna study and asks `pruner` about each.

    Every report of a trial becomes an intermediate value (`trial.report(value, step)`); the
    answer is `trial.should_prune()`. A trial that ends is told to the study: completed trials
    with their last value, stopped ones as pruned, failed or cancelled ones as failed. Trials the
    rule has not seen (e.g. after a controller restart) are replayed from their histories.

    Args:
        pruner: The optuna pruner.
        metric: Name of the metric.
        maximize: Whether larger values are better. Default False.
    """

    def __init__(self, pruner: optuna.pruners.BasePruner, metric: str, maximize: bool = False):
        super().__init__(metric, maximize)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.study = optuna.create_study(
            direction="maximize" if maximize else "minimize",
            pruner=pruner,
            sampler=optuna.samplers.RandomSampler(seed=0),
        )
        self._trials: dict[int, optuna.Trial] = {}
        self._last_step: dict[int, int] = {}
        self._ended: set[int] = set()

    def should_stop(self, trial: TrialRecord, trials: list[TrialRecord]) -> bool:
        for other in sorted(trials, key=lambda record: record.number):
            if other.number != trial.number and other.number not in self._trials:
                self._replay(other)
        if trial.number in self._ended:
            return False
        return self._catch_up(trial)

    def trial_ended(self, trial: TrialRecord) -> None:
        if trial.number in self._ended:
            return
        if trial.number not in self._trials:
            self._replay(trial, end=False)
        else:
            self._catch_up(trial)
        self._ended.add(trial.number)
        optuna_trial = self._trials[trial.number]
        points = metric_history(trial, self.metric)
        if trial.state == "completed" and points:
            self.study.tell(optuna_trial, points[-1][1])
        elif trial.state == "stopped":
            self.study.tell(optuna_trial, state=optuna.trial.TrialState.PRUNED)
        else:
            self.study.tell(optuna_trial, state=optuna.trial.TrialState.FAIL)

    def _catch_up(self, trial: TrialRecord) -> bool:
        """Report the steps not yet reported; the pruner's answer after the last one."""
        optuna_trial = self._trials.get(trial.number)
        if optuna_trial is None:
            optuna_trial = self._trials[trial.number] = self.study.ask()
        prune = False
        for step, value in metric_history(trial, self.metric):
            if step <= self._last_step.get(trial.number, -1):
                continue
            optuna_trial.report(value, step)
            self._last_step[trial.number] = step
            # Asked at every step: successive halving records each rung as it is reached.
            prune = bool(optuna_trial.should_prune())
        return prune

    def _replay(self, trial: TrialRecord, end: bool = True) -> None:
        self._catch_up(trial)
        if end and trial.state in ("completed", "stopped", "failed", "cancelled"):
            self.trial_ended(trial)
