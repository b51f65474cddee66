"""Item 8: values out of range (deep nesting, huge integers, NaN, long text, forged cursors,
huge steps) get a 4xx naming what is wrong, and stored state stays valid."""

from __future__ import annotations

import base64
import json
import time

import pytest

from tests.security.conftest import VALID_SPEC, count_sweeps

JSON = {"Content-Type": "application/json"}
YAML = {"Content-Type": "application/yaml"}


def problems_of(response) -> dict[str, str]:
    assert response.status_code == 422, f"{response.status_code}: {response.text[:500]}"
    return {problem["path"]: problem["msg"] for problem in response.json()["detail"]}


def cursor(parts) -> str:
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode()


@pytest.mark.parametrize("kind", ["json", "yaml"])
def test_a_deeply_nested_spec_is_refused(api, kind):
    nested = "[" * 20_000 + "]" * 20_000
    body = '{"method": "grid", "parameters": {"a": {"values": ' + nested + "}}}"
    content_type = "application/json" if kind == "json" else "application/yaml"
    before = count_sweeps(api)
    response = api.post("/api/v1/sweeps", content=body, headers={"Content-Type": content_type})
    problems = problems_of(response)
    assert any("deep" in msg for msg in problems.values()), problems
    assert count_sweeps(api) == before


@pytest.mark.parametrize(
    "field, value",
    [("run_cap", 2**70), ("parallelism", 2**40), ("seed", 2**70), ("seed", -(2**64))],
)
def test_an_integer_out_of_range_is_refused_with_the_range(api, field, value):
    before = count_sweeps(api)
    problems = problems_of(api.post("/api/v1/sweeps", json={**VALID_SPEC, field: value}))
    assert field in problems, problems
    assert "between" in problems[field] or "less than" in problems[field], problems
    assert count_sweeps(api) == before


def test_an_integer_beyond_64_bits_anywhere_is_refused_with_its_path(api):
    spec = {**VALID_SPEC, "parameters": {"units": {"values": [1, 2**64]}}}
    problems = problems_of(api.post("/api/v1/sweeps", json=spec))
    assert "parameters.units.values.1" in problems, problems


@pytest.mark.parametrize("text", ['{"min": NaN, "max": 1}', '{"min": 0, "max": Infinity}'])
def test_a_nan_or_infinite_bound_in_json_is_refused_with_its_path(api, text):
    spec = json.dumps({**VALID_SPEC, "parameters": {"lr": "BOUNDS"}}).replace('"BOUNDS"', text)
    response = api.post("/api/v1/sweeps", content=spec, headers=JSON)
    problems = problems_of(response)
    assert any(path.startswith("parameters.lr.m") for path in problems), problems


def test_a_nan_bound_in_yaml_is_refused_with_its_path(api):
    spec = json.dumps({**VALID_SPEC, "parameters": {"lr": {"min": 0.0, "max": 1.0}}})
    spec = spec.replace('"min": 0.0', '"min": .nan')
    response = api.post("/api/v1/sweeps", content=spec, headers=YAML)
    problems = problems_of(response)
    assert "parameters.lr.min" in problems, problems


def test_a_long_description_is_refused(api):
    before = count_sweeps(api)
    problems = problems_of(
        api.post("/api/v1/sweeps", json={**VALID_SPEC, "description": "x" * 300_000})
    )
    assert "description" in problems, problems
    assert count_sweeps(api) == before


@pytest.mark.parametrize(
    "parts",
    [["number", 2**70], ["number", -(2**70)], ["metric", 0.5, 2**70], ["metric", 1e308, 2**63]],
)
def test_a_forged_cursor_with_a_huge_number_is_refused(api, parts):
    sweep_id = "nosuchsweep"
    order = parts[0]
    response = api.get(
        f"/api/v1/sweeps/{sweep_id}/trials", params={"cursor": cursor(parts), "order": order}
    )
    assert "cursor" in problems_of(response)


def test_a_deeply_nested_cursor_is_refused(api):
    nested = "[" * 5_000 + "]" * 5_000
    deep = base64.urlsafe_b64encode(nested.encode()).decode()
    for path in ("/api/v1/sweeps", "/api/v1/sweeps/nosuchsweep/trials"):
        assert "cursor" in problems_of(api.get(path, params={"cursor": deep}))


@pytest.fixture()
def running_trial(api):
    """A trial of a sweep whose trials sleep; the sweep is cancelled afterwards."""
    sweep = api.post("/api/v1/sweeps", json=VALID_SPEC)
    assert sweep.status_code == 201, sweep.text
    sweep_id = sweep.json()["id"]
    try:
        for _ in range(600):
            trials = api.get(f"/api/v1/sweeps/{sweep_id}/trials").json()["items"]
            if trials:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the sweep started no trial")
        yield trials[0]["id"]
    finally:
        api.post(f"/api/v1/sweeps/{sweep_id}/cancel")


def test_a_report_step_out_of_range_is_refused_and_metrics_keep_updating(api, running_trial):
    for step in (2**31, 2**63, 2**70):
        response = api.post(
            f"/api/v1/trials/{running_trial}/reports",
            json={"step": step, "metrics": {"loss": 0.0}},
        )
        assert "step" in problems_of(response)
    trial = api.get(f"/api/v1/trials/{running_trial}").json()
    assert trial["epochs"] < 2**31
    # A later, ordinary report still moves the trial's metrics.
    step = trial["epochs"] + 1000
    accepted = api.post(
        f"/api/v1/trials/{running_trial}/reports", json={"step": step, "metrics": {"loss": 0.125}}
    )
    assert accepted.status_code == 200, accepted.text
    trial = api.get(f"/api/v1/trials/{running_trial}").json()
    assert trial["epochs"] == step and trial["metrics"]["loss"] == 0.125
