"""Prometheus metrics, readiness, and structured (JSON) logs carrying sweep and trial ids."""

from __future__ import annotations

import json
import logging
import threading
import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from ktsweep.service.models import Sweep, Trial


class Metrics:
    """The controller's metrics, in a registry of their own (one per app)."""

    def __init__(self, sessions: sessionmaker, report_count: ReportCount | None = None):
        self.registry = CollectorRegistry()
        self.scheduling_latency = Histogram(
            "ktsweep_scheduling_latency_seconds",
            "Time from a free slot (a trial ended, a sweep arrived) to the next trial launched.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.reports = report_count or ReportCount()
        self.registry.register(_ReportsCollector(self.reports))
        self.trials_launched = Counter(
            "ktsweep_trials_launched", "Trials handed to Ray.", registry=self.registry
        )
        self.registry.register(_StateCollector(sessions))
        self.registry.register(_RayResourcesCollector())


class ReportCount:
    """Worker reports accepted by this process (each API process counts its own: Prometheus
    scrapes each, and sums them)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._count = 0

    def inc(self) -> None:
        with self._lock:
            self._count += 1

    @property
    def total(self) -> int:
        return self._count


class _ReportsCollector:
    def __init__(self, count: ReportCount):
        self.count = count

    def collect(self):
        yield CounterMetricFamily(
            "ktsweep_reports",
            "Worker reports accepted (rate() gives reports per second).",
            value=self.count.total,
        )


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
