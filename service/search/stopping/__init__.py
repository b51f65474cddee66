"""Early-termination rules behind one small interface (`StoppingRule`)."""

from __future__ import annotations

from ktsweep.service.search.stopping.asha_stopping import AshaStoppingRule
from ktsweep.service.search.stopping.base import StoppingRule
from ktsweep.service.search.stopping.hyperband_stopping import HyperbandStoppingRule
from ktsweep.service.search.stopping.median_stopping import MedianStoppingRule
from ktsweep.service.spec import AshaStopping, HyperbandStopping, MedianStopping, SweepSpec


def make_stopping_rule(spec: SweepSpec) -> StoppingRule | None:
    """The rule a spec's `early_terminate` asks for, or None."""
    config = spec.early_terminate
    if config is None or spec.metric is None:
        return None
    metric, maximize = spec.metric.name, spec.metric.goal == "maximize"
    if isinstance(config, HyperbandStopping):
        return HyperbandStoppingRule(
            metric, config.bands(), eta=config.eta, strict=config.strict, maximize=maximize
        )
    if isinstance(config, AshaStopping):
        return AshaStoppingRule(
            metric,
            min_iter=config.min_iter,
            eta=config.eta,
            min_early_stopping_rate=config.min_early_stopping_rate,
            maximize=maximize,
        )
    if isinstance(config, MedianStopping):
        return MedianStoppingRule(
            metric,
            n_startup_trials=config.n_startup_trials,
            n_warmup_steps=config.n_warmup_steps,
            interval_steps=config.interval_steps,
            n_min_trials=config.n_min_trials,
            maximize=maximize,
        )
    raise ValueError(f"unknown early_terminate type {config.type!r}")


__all__ = [
    "AshaStoppingRule",
    "HyperbandStoppingRule",
    "MedianStoppingRule",
    "StoppingRule",
    "make_stopping_rule",
]
