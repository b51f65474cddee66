"""Prometheus metrics, readiness, and structured (JSON) logs carrying sweep and trial ids."""

from __future__ import annotations

import json
import logging
import os
import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from ktsweep.service.models import Sweep, Trial


class Metrics:
    """The controller's metrics, and the registry that `/metrics` exposes (one per app).

    The counters and the histogram count what this process did. With `PROMETHEUS_MULTIPROC_DIR`
    set (`ktsweep serve --no-scheduler --workers N` sets it), prometheus_client keeps them in
    files there, one per process, and a scrape sums every process's files
    (`MultiProcessCollector`): whichever process answers, the totals are those of them all,
    processes that died included. The gauges (trials and sweeps by state, Ray resources) are
    computed at scrape time, by the process that answers, so they are reported once; no gauge
    lives in the files, so a dead process's files need no `mark_process_dead`. The variable must
    be set before prometheus_client is imported, and its folder emptied between runs (the CLI
    makes a fresh one).

    Args:
        sessions: Database session factory, for trials and sweeps by state.
    """

    def __init__(self, sessions: sessionmaker):
        multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        self.registry = CollectorRegistry()
        # Under multiprocess mode the counters are read from the files, not from this process.
        own = None if multiprocess_dir else self.registry
        self.scheduling_latency = Histogram(
            "ktsweep_scheduling_latency_seconds",
            "Time from a free slot (a trial ended, a sweep arrived) to the next trial launched.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=own,
        )
        self.reports = Counter(
            "ktsweep_reports",
            "Worker reports accepted (rate() gives reports per second).",
            registry=own,
        )
        self.trials_launched = Counter(
            "ktsweep_trials_launched", "Trials handed to Ray.", registry=own
        )
        if multiprocess_dir:
            MultiProcessCollector(self.registry, path=multiprocess_dir)
        self.registry.register(_StateCollector(sessions))
        self.registry.register(_RayResourcesCollector())


class _StateCollector:
    """Trials and sweeps by state, counted in the database at scrape time."""

    def __init__(self, sessions: sessionmaker):
        self.sessions = sessions

    def collect(self):
        trials = GaugeMetricFamily("ktsweep_trials", "Trials by state.", labels=["state"])
        sweeps = GaugeMetricFamily("ktsweep_sweeps", "Sweeps by state.", labels=["state"])
        with self.sessions() as session:
            for state, count in session.execute(
                select(Trial.state, func.count()).group_by(Trial.state)
            ):
                trials.add_metric([state], count)
            for state, count in session.execute(
                select(Sweep.state, func.count()).group_by(Sweep.state)
            ):
                sweeps.add_metric([state], count)
        yield trials
        yield sweeps


class _RayResourcesCollector:
    """Ray resources in the cluster and in use (CPU, GPU, TPU, memory...)."""

    def collect(self):
        import ray

        family = GaugeMetricFamily(
            "ktsweep_ray_resources", "Ray resources: total and in use.", labels=["resource", "kind"]
        )
        if ray.is_initialized():
            total = ray.cluster_resources()
            available = ray.available_resources()
            for name, amount in total.items():
                if name.startswith("node:"):
                    continue
                family.add_metric([name, "total"], amount)
                family.add_metric([name, "in_use"], amount - available.get(name, 0.0))
        yield family


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with `sweep_id` / `trial_id` when the record carries them."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("sweep_id", "trial_id"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str = "INFO") -> None:
    """Send the controller's logs to stderr as JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("ktsweep")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
