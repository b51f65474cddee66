"""Item 10 of the trust boundary: a checkpoint named in a worker's report is reused to resume a
retried trial only if it lies in the artifact folder. Trial code holds its trial's token and
can report any path; the worker would load it as a model."""

from __future__ import annotations

from ktsweep.service.auth import trial_token
from ktsweep.service.sweeps import get_trial
from tests.service.helpers import controller, store_sweep


def reported_then_resumed(api, checkpoint: str) -> str | None:
    sweep = store_sweep(api, objectives=[None], trial_state="running", max_retries=2)
    trial_id = f"{sweep.id}-0"
    token = trial_token(api.app_state.scheduler.secret, trial_id)
    answer = api.post(
        f"/api/v1/trials/{trial_id}/reports",
        json={"step": 1, "metrics": {"val_accuracy": 0.5}, "checkpoint": checkpoint},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 200, answer.text
    scheduler = api.app_state.scheduler
    with api.app_state.sessions() as session:
        trial = get_trial(session, trial_id)
        assert trial.checkpoint == checkpoint  # stored as reported (a record of what it said)
        spec = scheduler._spec_of(trial.sweep)
        return scheduler.trial_spec(trial.sweep, spec, trial, resume=True).resume_from


def test_a_reported_checkpoint_outside_the_artifact_folder_is_never_resumed_from(tmp_path):
    outside = tmp_path / "elsewhere" / "model.keras"
    with controller(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, api_tokens="op") as api:
        assert reported_then_resumed(api, str(outside)) is None
        assert reported_then_resumed(api, str(tmp_path / "artifacts" / ".." / "x.keras")) is None
        assert reported_then_resumed(api, "wandb-artifact://someone/else/model:latest") is None
        inside = str(tmp_path / "artifacts" / "s" / "t" / "last.keras")
        assert reported_then_resumed(api, inside) == inside
