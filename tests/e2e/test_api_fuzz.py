"""schemathesis against the OpenAPI schema of a live controller: no request gets a 5xx."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from ktsweep.service.app import create_app
from ktsweep.service.config import Settings
from tests.e2e.conftest import ServerProcess

_schema_dir = Path(tempfile.mkdtemp(prefix="ktsweep-schema-"))
_app = create_app(Settings(database_url=f"sqlite:///{_schema_dir / 'schema.db'}"))
schema = schemathesis.openapi.from_dict(_app.openapi())

EXAMPLES_PER_OPERATION = 110
calls: list[tuple[str, str, int]] = []


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    process = ServerProcess(tmp_path_factory.mktemp("fuzz")).start()
    yield process
    process.stop()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_generated_request_gets_a_server_error(case, fuzz_server):
    response = case.call(base_url=fuzz_server.url)
    calls.append((case.method, case.path, response.status_code))
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text}"


def test_fuzzing_sent_at_least_a_thousand_requests():
    # Runs after the parametrized test above (pytest keeps file order).
    assert len(calls) >= 1000, len(calls)
    assert {status for _, _, status in calls} >= {200, 404, 422}
