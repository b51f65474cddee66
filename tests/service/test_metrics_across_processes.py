"""`/metrics` of `ktsweep serve --no-scheduler --workers 2` sums both processes' counters
(prometheus_client's multiprocess mode), in a private folder the command removes when it stops,
and reports what it counts in the database once."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from ktsweep.service import cli
from tests.service.api_processes import api_server, store_running_trials
from tests.service.conftest import empty_postgres_database

BATCH = 10  # reports sent at once, each on a fresh connection


def reports_by_process(folder: Path, scratch: Path) -> dict[int, float]:
    """Worker reports each process counted, read from its own counter file in `folder`."""
    counted = {}
    for path in folder.glob("counter_*.db"):
        alone = scratch / path.stem
        alone.mkdir(exist_ok=True)
        shutil.copy(path, alone / path.name)
        samples = [
            sample
            for family in MultiProcessCollector(None, path=str(alone)).collect()
            for sample in family.samples
            if sample.name == "ktsweep_reports_total"
        ]
        counted[int(path.stem.split("_")[1])] = sum(sample.value for sample in samples)
    return counted


def scraped(text: str) -> dict[str, list[float]]:
    """Each sample's values by its name and labels (a sample reported twice has two)."""
    values: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{key}={value}" for key, value in sorted(sample.labels.items()))
            values.setdefault(f"{sample.name}{{{labels}}}", []).append(sample.value)
    return values


def test_any_process_scrapes_the_reports_counted_by_every_process(tmp_path):
    temporary = tmp_path / "tmp"  # where the command makes its metrics folder
    temporary.mkdir()
    with (
        empty_postgres_database("ktsweep_metrics") as database_url,
        api_server(database_url, tmp_path, ("--workers", "2"), TMPDIR=str(temporary)) as (
            server,
            _lease,
        ),
    ):
        [folder] = temporary.glob("ktsweep-metrics-*")
        trial_ids = iter(store_running_trials(database_url, 400))
        sent = 0

        def report(trial_id: str) -> int:
            body = {"step": 1, "metrics": {"val_accuracy": 0.5}}
            url = f"{server.url}/api/v1/trials/{trial_id}/reports"
            return httpx.post(url, json=body, headers=server.auth, timeout=60).status_code

        with ThreadPoolExecutor(BATCH) as pool:
            # Until both processes have taken some: each then holds only a part of the total.
            while len(counted := reports_by_process(folder, tmp_path)) < 2 or 0 in set(
                counted.values()
            ):
                assert sent < 300, f"one process took every report: {counted}"
                batch = [next(trial_ids) for _ in range(BATCH)]
                assert list(pool.map(report, batch)) == [200] * BATCH
                sent += BATCH
        assert sum(counted.values()) == sent
        for _ in range(8):  # each on a fresh connection, answered by either process
            answer = httpx.get(f"{server.url}/metrics", headers=server.auth, timeout=60)
            assert answer.status_code == 200
            values = scraped(answer.text)
            assert values["ktsweep_reports_total{}"] == [sent]
            assert values["ktsweep_trials{state=running}"] == [400]  # once, from the database
            assert values["ktsweep_sweeps{state=running}"] == [1]
    assert not folder.exists()  # removed when the command stopped


def test_serve_refuses_a_metrics_folder_that_is_not_there(tmp_path, monkeypatch):
    monkeypatch.setenv("KTSWEEP_DATABASE_URL", f"sqlite:///{tmp_path / 'ktsweep.db'}")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "missing"))
    result = CliRunner().invoke(cli.app, ["serve"])
    assert result.exit_code == 2, result.output
    assert "PROMETHEUS_MULTIPROC_DIR" in result.output
    assert "is not a folder" in result.output
