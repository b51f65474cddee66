"""The sweep's best, marked on its W&B runs as the dashboard shows it.

A multi-objective sweep's Pareto front (`GET /sweeps/{id}/best`) gets the tag `pareto-front` on
the W&B runs of its trials; a single-objective sweep's best trial gets `best`. In W&B, filtering
the project's runs by that tag then shows what ktsweep's dashboard shows; each run's summary
already holds its objective values.

`ktsweep sync` marks them after uploading the sweep's offline runs (online runs exist in W&B
from their start), through wandb's public API (`wandb.Api`, which honours `WANDB_BASE_URL` and
`WANDB_API_KEY`). A run that no longer belongs to the best loses the tag, so syncing again
while a sweep runs, or after it ends, leaves exactly the best marked.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

FRONT_TAG = "pareto-front"
BEST_TAG = "best"


@dataclass
class Marks:
    """What `mark_best_runs` did: runs tagged, untagged, and runs it could not reach."""

    tag: str
    tagged: list[str] = field(default_factory=list)
    untagged: list[str] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)


def best_ids(best: dict[str, Any]) -> tuple[str, set[str]]:
    """The tag and the trial ids to carry it, from the answer of `GET /sweeps/{id}/best`."""
    if "front" in best:
        return FRONT_TAG, {trial["id"] for trial in best["front"]}
    return BEST_TAG, {best["id"]}


def mark_best_runs(
    trials: Iterable[dict[str, Any]], best: dict[str, Any], api: Any = None
) -> Marks:
    """Tag the W&B runs of the sweep's best trials, and untag the runs of the others.

    Args:
        trials: The sweep's trials, as `GET /sweeps/{id}/trials` lists them; those without a
            W&B run (disabled) are left alone.
        best: The answer of `GET /sweeps/{id}/best`.
        api: A `wandb.Api`; default: a new one (W&B's login and `WANDB_BASE_URL`).

    Returns:
        The runs tagged and untagged (by trial id), and those W&B did not answer for (not
        uploaded yet, or deleted).
    """
    import wandb

    tag, marked = best_ids(best)
    marks = Marks(tag)
    api = api or wandb.Api()
    for trial in trials:
        link = trial.get("wandb") or {}
        if not link.get("run_id") or not link.get("project"):
            continue
        entity = link.get("entity") or api.default_entity
        try:
            run = api.run(f"{entity}/{link['project']}/{link['run_id']}")
        except (ValueError, wandb.errors.CommError):
            marks.unreachable.append(trial["id"])
            continue
        wanted = trial["id"] in marked
        if wanted == (tag in run.tags):
            continue
        run.tags = [*run.tags, tag] if wanted else [t for t in run.tags if t != tag]
        run.update()
        (marks.tagged if wanted else marks.untagged).append(trial["id"])
    return marks
