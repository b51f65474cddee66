"""After a controller restart the scheduler's search method learns the sweep's trials from the
database, so the sweep goes on as if the controller had never stopped."""

from __future__ import annotations

import uuid

import pytest

from ktsweep.service.models import Sweep, SweepState, Trial, TrialReport
from ktsweep.service.search import make_search_method
from ktsweep.service.spec import parse_spec
from tests.service.helpers import DIGITS_SPEC, controller
from tests.service.scripted_sweep import SPACE, ScriptedSweep

SPEC = {
    **DIGITS_SPEC,
    "method": "tpe",
    "metric": {"name": "val_loss", "goal": "minimize"},
    "parameters": SPACE,
    "seed": 11,
    "run_cap": 30,
}


@pytest.fixture()
def api(tmp_path):
    with controller(f"sqlite:///{tmp_path / 'ktsweep.db'}", tmp_path) as client:
        yield client


def store(api, records) -> str:
    """Store a paused sweep (the scheduler leaves it alone) with `records` as its trials."""
    with api.app_state.sessions() as session:
        sweep = Sweep(id=uuid.uuid4().hex[:12], name="restarted", state="paused", spec=SPEC)
        session.add(sweep)
        session.flush()
        for record in records:
            trial_id = f"{sweep.id}-{record.number}"
            session.add(
                Trial(
                    id=trial_id,
                    sweep_id=sweep.id,
                    number=record.number,
                    state=record.state,
                    hyperparameters=record.hyperparameters,
                    metrics=record.history[-1]["metrics"],
                    objective=record.objective if record.state == "completed" else None,
                    epochs=record.epochs,
                    attempts=1,
                    finished_at=record.finished_at,
                )
            )
            for entry in record.history:
                session.add(
                    TrialReport(trial_id=trial_id, step=entry["step"], metrics=entry["metrics"])
                )
        session.commit()
        return sweep.id


def test_scheduler_after_a_restart_suggests_what_the_uninterrupted_search_would(api):
    spec = parse_spec(SPEC)
    uninterrupted = make_search_method(spec)
    sweep = ScriptedSweep(parallelism=1, fail_every=4)
    sweep.run(14, uninterrupted)
    sweep.end_oldest(uninterrupted)  # 14 finished trials, 3 of them failed
    sweep_id = store(api, sweep.records)

    scheduler = api.app_state.scheduler
    with api.app_state.sessions() as session:
        stored = session.get(Sweep, sweep_id)
        assert stored.state == SweepState.PAUSED.value
        method = scheduler.method_for(stored)
        assert scheduler.method_for(stored) is method

    assert sorted(method.finished) == list(range(14))
    expected = uninterrupted.suggest(14, sweep.records)
    assert method.suggest(14, sweep.records) == expected
    assert make_search_method(spec).suggest(14, sweep.records) != expected


def test_bad_hyperband_factor_is_refused_with_422_and_its_path(api):
    spec = {**DIGITS_SPEC, "method": "hyperband", "hyperband": {"factor": 1}}
    spec["trial"] = {**DIGITS_SPEC["trial"], "fit": {"epochs": 9}}
    answer = api.post("/api/v1/sweeps", json=spec)
    assert answer.status_code == 422
    assert [problem["path"] for problem in answer.json()["detail"]] == ["hyperband.factor"]
    assert api.get("/api/v1/sweeps").json()["items"] == []
