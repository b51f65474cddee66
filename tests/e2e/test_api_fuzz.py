"""schemathesis against the OpenAPI schema of a live controller: no request gets a 5xx.

Beyond what the schema suggests, hypothesis puts hostile values (integers past 32 and 64 bits,
NaN and infinities, text longer than any limit, nesting thousands deep) in every place a spec,
a report or a cursor holds a value: each gets a 4xx, never a 5xx.
"""

from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    response = case.call(base_url=fuzz_server.url, headers=fuzz_server.auth)
    calls.append((case.method, case.path, response.status_code))
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text}"


# Hostile values as JSON text (json.dumps can write neither 5000-deep nesting nor big NaN lists).
HOSTILE_JSON = st.one_of(
    st.integers(min_value=2**31 - 1, max_value=2**90).map(str),
    st.integers(min_value=-(2**90), max_value=-(2**63) - 1).map(str),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999"]),
    st.integers(min_value=10_001, max_value=300_000).map(lambda n: json.dumps("x" * n)),
    st.integers(min_value=33, max_value=5_000).map(lambda n: "[" * n + "]" * n),
    st.integers(min_value=33, max_value=5_000).map(lambda n: '{"a":' * n + "1" + "}" * n),
)
SPEC = {
    "method": "random",
    "metric": {"name": "val_accuracy", "goal": "maximize"},
    "parameters": {"units": {"values": [16, 32]}, "lr": {"min": 0.001, "max": 0.1}},
    "run_cap": 2,
    "trial": {
        "hypermodel": "ktsweep.examples.digits:build_model",
        "data": "ktsweep.examples.digits:load_data",
        "fit": {"epochs": 1},
    },
    "wandb": {"mode": "disabled"},
}
SPEC_PLACES = [
    ("run_cap",),
    ("parallelism",),
    ("seed",),
    ("name",),
    ("description",),
    ("parameters", "units", "values"),
    ("parameters", "lr", "min"),
    ("parameters", "lr", "max"),
    ("trial", "fit", "epochs"),
    ("trial", "max_retries"),
]
hostile_calls: list[int] = []


def _with_hole(data: dict, place: tuple[str, ...]) -> str:
    """`data` as JSON text with `__HOLE__` at `place`."""
    data = json.loads(json.dumps(data))
    node = data
    for key in place[:-1]:
        node = node[key]
    node[place[-1]] = "__HOLE__"
    return json.dumps(data)


@settings(
    max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)
@given(value=HOSTILE_JSON, place=st.sampled_from(SPEC_PLACES), target=st.integers(0, 3))
def test_no_hostile_value_gets_a_server_error(fuzz_server, value, place, target):
    json_headers = {"Content-Type": "application/json"}
    with httpx.Client(base_url=fuzz_server.url, headers=fuzz_server.auth, timeout=120) as client:
        if target == 0:  # a spec, as JSON
            body = _with_hole(SPEC, place).replace('"__HOLE__"', value)
            response = client.post("/api/v1/sweeps", content=body, headers=json_headers)
        elif target == 1:  # a spec, as YAML (JSON is YAML)
            body = _with_hole(SPEC, place).replace('"__HOLE__"', value)
            yaml_headers = {"Content-Type": "application/yaml"}
            response = client.post("/api/v1/sweeps", content=body, headers=yaml_headers)
        elif target == 2:  # a report's step or metric
            report = '{"step": %s, "metrics": {"loss": %s}}'
            body = report % ((value, "0.5") if len(place) % 2 else ("1", value))
            response = client.post("/api/v1/trials/t-0/reports", content=body, headers=json_headers)
        else:  # a forged cursor, for either listing
            value = value[:20_000]  # httpx sends no query past 64 KiB; the server refuses 1 KiB
            kind = "number" if len(place) % 2 else "metric"
            parts = f'["number", {value}]' if kind == "number" else f'["metric", {value}, 1]'
            cursor = base64.urlsafe_b64encode(parts.encode()).decode()
            path = "/api/v1/sweeps" if len(place) == 3 else "/api/v1/sweeps/none/trials"
            response = client.get(path, params={"cursor": cursor, "order": kind})
        if response.status_code == 201:  # a value within range: stop its trials
            client.post(f"/api/v1/sweeps/{response.json()['id']}/cancel")
    hostile_calls.append(response.status_code)
    assert response.status_code < 500, f"{value[:80]} at {place} ({target}): {response.text[:300]}"


def test_fuzzing_sent_at_least_a_thousand_requests():
    # Runs after the parametrized test above (pytest keeps file order).
    assert len(calls) >= 1000, len(calls)
    assert {status for _, _, status in calls} >= {200, 404, 422}
    assert len(hostile_calls) >= 100, len(hostile_calls)
