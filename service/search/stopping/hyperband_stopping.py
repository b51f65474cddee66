"""W&B's hyperband early termination: at each band, stop trials outside the top 1/eta."""

from __future__ import annotations

from ktsweep.service.search.base import TrialRecord, metric_history
from ktsweep.service.search.stopping.base import StoppingRule


class HyperbandStoppingRule(StoppingRule):
    """Stops a trial whose metric at its latest band is worse than the top `1/eta` of all trials.

    W&B's semantics. Bands are reported steps: with `min_iter`, `min_iter * eta**k`
    (k = 0, 1, ...); with `max_iter` and `s`, `max_iter / eta**k` for k = 1..s (whole steps,
    at least 1). Once a trial has reported step `b` of a band `b`, the threshold of that band is
    the value at index `int(len(values) / eta)` of every trial's value at step `b`, sorted best
    first (all trials count, running or finished); the trial stops when it is worse than the
    threshold. With `strict` (W&B's default) the trial's value at the band is compared, as in
    the original algorithm; without it, its best value so far, which stops fewer trials.

    Args:
        metric: Name of the metric.
        bands: Steps at which trials are judged.
        eta: The fraction `1/eta` of trials passes each band. Default 3.
        strict: Compare the value at the band (True) or the best value so far. Default True.
        maximize: Whether larger values are better. Default False.
    """

    def __init__(
        self,
        metric: str,
        bands: list[int],
        eta: float = 3,
        strict: bool = True,
        maximize: bool = False,
    ):
        super().__init__(metric, maximize)
        if not bands:
            raise ValueError("hyperband stopping needs at least one band; lower `eta`.")
        self.bands = sorted(bands)
        self.eta = eta
        self.strict = strict

    def should_stop(self, trial: TrialRecord, trials: list[TrialRecord]) -> bool:
        own = self._losses(trial)
        if not own:
            return False
        last_step = own[-1][0]
        passed = [band for band in self.bands if band <= last_step]
        if not passed:
            return False
        band = passed[-1]
        at_band = []
        for other in trials:
            losses = self._losses(other)
            value = _value_at(losses, band)
            if value is not None:
                at_band.append(value)
        if not at_band:
            return False
        threshold = sorted(at_band)[int(len(at_band) / self.eta)]
        value = _value_at(own, band) if self.strict else min(loss for _, loss in own)
        return value is not None and value > threshold

    def _losses(self, trial: TrialRecord) -> list[tuple[int, float]]:
        # Smaller is better from here on, as in W&B (which negates maximised metrics).
        sign = -1.0 if self.maximize else 1.0
        return [(step, sign * value) for step, value in metric_history(trial, self.metric)]


def _value_at(losses: list[tuple[int, float]], band: int) -> float | None:
    """The value a trial had at step `band` (its last report at or before it), if it got there."""
    if not losses or losses[-1][0] < band:
        return None
    value = None
    for step, loss in losses:
        if step > band:
            break
        value = loss
    return value
