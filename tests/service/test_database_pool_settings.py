"""The PostgreSQL connections an API process holds are bounded by its pool settings
(`KTSWEEP_DB_POOL_SIZE`, `KTSWEEP_DB_SYNC_POOL_SIZE`, `KTSWEEP_DB_SYNC_MAX_OVERFLOW`), and a
bad value stops the command at start with one line naming it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest
from typer.testing import CliRunner

from ktsweep.service import cli
from ktsweep.service.leadership import _conninfo
from tests.service.api_processes import api_server, store_running_trials
from tests.service.conftest import empty_postgres_database

POOLS = {
    "KTSWEEP_DB_POOL_SIZE": "2",
    "KTSWEEP_DB_SYNC_POOL_SIZE": "1",
    "KTSWEEP_DB_SYNC_MAX_OVERFLOW": "1",
}
LIMIT = 2 + 1 + 1  # the async pool, the sync pool and its overflow


class ConnectionCounter:
    """Counts, every few milliseconds on a thread of its own, the connections to a database
    other than its own and those named in `besides`; keeps the most seen."""

    def __init__(self, database_url: str, besides: set[int]):
        self.connection = psycopg.connect(_conninfo(database_url), autocommit=True)
        self.besides = [*besides, self.connection.info.backend_pid]
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._count, daemon=True)

    def now(self) -> int:
        row = self.connection.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> ALL(%s)",
            (self.besides,),
        ).fetchone()
        return row[0]

    def _count(self) -> None:
        while not self._stop.wait(0.005):
            self.most = max(self.most, self.now())

    def __enter__(self) -> ConnectionCounter:
        self.most = self.now()
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()
        self.connection.close()


def test_an_api_process_holds_no_more_connections_than_its_pools_allow(tmp_path):
    with (
        empty_postgres_database("ktsweep_pools") as database_url,
        api_server(database_url, tmp_path, **POOLS) as (server, lease),
    ):
        trial_ids = store_running_trials(database_url, 60)
        sweep_id = trial_ids[0].rsplit("-", 1)[0]
        requests = [
            *(("POST", f"/api/v1/trials/{trial}/reports") for trial in trial_ids),
            *(("POST", f"/api/v1/trials/{trial}/heartbeat") for trial in trial_ids[:20]),
            *(("GET", f"/api/v1/sweeps/{sweep_id}/trials") for _ in range(20)),
            *(("GET", f"/api/v1/sweeps/{sweep_id}") for _ in range(20)),
            *(("GET", path) for path in ("/readyz", "/metrics") for _ in range(20)),
        ]
        with (
            ConnectionCounter(database_url, besides={lease.backend_pid}) as counter,
            httpx.Client(
                base_url=server.url,
                headers=server.auth,
                timeout=60,
                limits=httpx.Limits(max_connections=32),
            ) as api,
            ThreadPoolExecutor(32) as pool,
        ):

            def send(request: tuple[str, str]) -> int:
                method, path = request
                body = {"step": 1, "metrics": {"val_accuracy": 0.5}} if "reports" in path else None
                return api.request(method, path, json=body).status_code

            statuses = list(pool.map(send, requests))
        assert statuses == [200] * len(requests)
        assert 2 <= counter.most <= LIMIT, f"{counter.most} connections at once"


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("KTSWEEP_DB_POOL_SIZE", "0", "greater than or equal to 1"),
        ("KTSWEEP_DB_POOL_SIZE", "many", "a valid integer"),
        ("KTSWEEP_DB_SYNC_POOL_SIZE", "2.5", "a valid integer"),
        ("KTSWEEP_DB_SYNC_MAX_OVERFLOW", "-1", "greater than or equal to 0"),
    ],
)
@pytest.mark.parametrize("command", [["serve"], ["scheduler", "--api-url", "http://api:8000"]])
def test_a_bad_pool_setting_stops_the_command_with_one_line_naming_it(
    command, variable, value, says, tmp_path, monkeypatch
):
    monkeypatch.setenv("KTSWEEP_DATABASE_URL", f"sqlite:///{tmp_path / 'ktsweep.db'}")
    monkeypatch.setenv(variable, value)
    result = CliRunner().invoke(cli.app, command)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith(f"{variable}='{value}': it should be {says}")
    assert "unset it for the default (" in lines[0]
