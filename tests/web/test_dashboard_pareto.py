"""A multi-objective sweep's Pareto front on the dashboard, in Chromium over a real controller.

The sweeps are stored straight into the controller's database (finished, with trials whose
objective values are chosen so the front is known), as a controller stores what its workers
report; the controller then serves them as any other sweep.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import httpx
import pytest
from playwright.sync_api import expect
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from ktsweep.service.models import Sweep, SweepState, Trial, TrialReport, utcnow
from ktsweep.service.spec import parse_spec
from tests.e2e.conftest import ServerProcess
from tests.web.conftest import TOKEN, needs_chromium

pytestmark = needs_chromium

ACCURACY = {"name": "val_accuracy", "goal": "maximize"}
SIZE = {"name": "model/parameters", "goal": "minimize"}
FIT_TIME = {"name": "model/fit_time_s", "goal": "minimize"}
FINISHED = ("completed", "stopped")
METRICS = ("val_accuracy", "model/parameters", "model/fit_time_s")

# (state, val_accuracy, model/parameters, model/fit_time_s); None: not reported.
TRIALS = [
    ("completed", 0.90, 5000, 4.0),
    ("completed", 0.80, 1000, 2.0),
    ("completed", 0.85, 3000, 1.0),
    ("completed", 0.70, 2000, 3.0),  # dominated by #1 in accuracy and size
    ("completed", 0.88, 6000, 5.0),  # dominated by #0 in every objective
    ("completed", 0.95, 20000, 9.0),
    ("stopped", 0.60, 500, 0.5),  # stopped early, but finished: it counts
    ("failed", None, None, None),
    ("completed", 0.85, 3000, 1.0),  # the same values as #2: both are on the front
    ("completed", 0.99, None, None),  # no size: on no front
    ("cancelled", 0.99, 100, 0.1),  # not finished: on no front though it would dominate
]


@pytest.fixture(scope="module")
def controller(tmp_path_factory):
    """`ktsweep serve` (one token, open reads) and a session factory on its database."""
    process = ServerProcess(
        tmp_path_factory.mktemp("pareto"), KTSWEEP_API_TOKENS=TOKEN, KTSWEEP_OPEN_READS="1"
    ).start()
    engine = create_engine(process.env["KTSWEEP_DATABASE_URL"])
    yield process.url, sessionmaker(engine)
    engine.dispose()
    process.stop()


@pytest.fixture(scope="module")
def dashboard_server(controller):
    """The pages of this module open on the controller whose database the tests write into."""
    return controller[0]


def store_sweep(sessions, objectives: list[dict], trials=TRIALS, name="accuracy-vs-size") -> dict:
    """A finished sweep optimising `objectives` with `trials`: its id and trials by number."""
    spec = {
        "name": name,
        "parameters": {
            "units": {"values": [16, 32, 64]},
            "learning_rate": {"distribution": "log_uniform_values", "min": 1e-3, "max": 3e-2},
        },
        "run_cap": len(trials),
        "trial": {
            "hypermodel": "ktsweep.examples.digits:build_model",
            "data": "ktsweep.examples.digits:load_data",
            "fit": {"epochs": 2},
        },
        "wandb": {"mode": "disabled"},
    }
    if len(objectives) > 1:
        spec.update(method="custom", metrics=objectives, scheduler={"engine": "optuna"})
    else:
        spec.update(method="random", metric=objectives[0])
    parse_spec(spec)  # a spec the controller would take
    names = [objective["name"] for objective in objectives]
    started = utcnow() - timedelta(minutes=10)
    stored = {}
    with sessions() as session:
        sweep = Sweep(
            id=uuid.uuid4().hex[:12],
            name=name,
            state=SweepState.FINISHED.value,
            spec=spec,
            finished_at=utcnow(),
        )
        session.add(sweep)
        session.flush()
        for number, (state, *values) in enumerate(trials):
            metrics = {
                key: value for key, value in zip(METRICS, values, strict=True) if value is not None
            }
            trial = Trial(
                id=f"{sweep.id}-{number}",
                sweep_id=sweep.id,
                number=number,
                state=state,
                hyperparameters={
                    "units": [16, 32, 64][number % 3],
                    "learning_rate": 0.002 * (1 + number),
                },
                metrics=metrics,
                objective=metrics.get(names[0]) if len(names) == 1 else None,
                epochs=2 if "val_accuracy" in metrics else 0,
                attempts=1,
                started_at=started,
                finished_at=started + timedelta(seconds=30 + number),
            )
            session.add(trial)
            stored[number] = {"id": trial.id, "state": state, "metrics": metrics}
            if "val_accuracy" in metrics:
                # What the trial reported each epoch: a worse accuracy, then its final one.
                accuracy = metrics["val_accuracy"]
                for step, value in ((1, accuracy - 0.1), (2, accuracy)):
                    session.add(
                        TrialReport(trial_id=trial.id, step=step, metrics={"val_accuracy": value})
                    )
        session.commit()
        return {"id": sweep.id, "trials": stored}


def dominates(a: list[float], b: list[float], objectives: list[dict]) -> bool:
    signs = [-1 if objective["goal"] == "maximize" else 1 for objective in objectives]
    at_least = all(s * x <= s * y for s, x, y in zip(signs, a, b, strict=True))
    return at_least and any(s * x < s * y for s, x, y in zip(signs, a, b, strict=True))


def expected_front(stored: dict, objectives: list[dict]) -> tuple[list[str], list[str]]:
    """(ids of finished trials with every objective, ids of those none of them dominates)."""
    names = [objective["name"] for objective in objectives]
    points = {
        trial["id"]: [trial["metrics"][name] for name in names]
        for trial in stored["trials"].values()
        if trial["state"] in FINISHED and all(name in trial["metrics"] for name in names)
    }
    front = [
        trial_id
        for trial_id, values in points.items()
        if not any(dominates(other, values, objectives) for other in points.values())
    ]
    return list(points), front


def ids(locator) -> list[str]:
    return [locator.nth(i).get_attribute("data-trial-id") for i in range(locator.count())]


def test_two_objectives_scatter_every_finished_trial_and_highlight_the_front(
    page, controller, screenshot
):
    url, sessions = controller
    objectives = [ACCURACY, SIZE]
    sweep = store_sweep(sessions, objectives)
    scattered, front = expected_front(sweep, objectives)
    # The data are chosen so that the front is neither everything nor a single trial.
    assert 1 < len(front) < len(scattered)
    best = httpx.get(f"{url}/api/v1/sweeps/{sweep['id']}/best").json()
    assert [trial["id"] for trial in best["front"]] == front

    page.goto(f"/sweeps/{sweep['id']}")

    points = page.locator("#pareto-scatter circle.point")
    expect(points).to_have_count(len(scattered))
    assert sorted(ids(points)) == sorted(scattered)
    assert sorted(ids(page.locator("#pareto-scatter circle.point.front"))) == sorted(front)
    for trial_id in scattered:
        link = page.locator(f'#pareto-scatter a.point-link[data-trial-id="{trial_id}"]')
        expect(link).to_have_attribute("href", f"/trials/{trial_id}")
    expect(page.locator("#pareto-scatter path.front-line")).to_have_count(1)
    expect(page.locator("#pareto-scatter .x-title")).to_have_text(
        re.compile(r"^val_accuracy \(maximize\)")
    )
    expect(page.locator("#pareto-scatter .y-title")).to_have_text(
        re.compile(r"^model/parameters \(minimize\)")
    )

    # The front card lists the front's trials with their objective values, and no best trial.
    expect(page.locator("#best-trial")).to_have_count(0)
    rows = page.locator("#front-table tbody tr")
    expect(rows).to_have_count(len(front))
    assert ids(rows) == front
    first = page.locator(f'#front-table tr[data-trial-id="{front[0]}"]')
    metrics = next(t for t in sweep["trials"].values() if t["id"] == front[0])["metrics"]
    expect(first.locator('[data-objective="model/parameters"]')).to_have_text(
        str(metrics["model/parameters"])
    )
    expect(first.locator("a")).to_have_attribute("href", f"/trials/{front[0]}")

    # The trials table filters to the front and back.
    table_rows = page.locator("#trials-table tbody tr")
    expect(table_rows).to_have_count(len(sweep["trials"]))
    assert sorted(ids(page.locator("#trials-table tbody tr.front"))) == sorted(front)
    page.check("#front-only")
    expect(table_rows).to_have_count(len(front))
    assert sorted(ids(table_rows)) == sorted(front)
    page.uncheck("#front-only")
    expect(table_rows).to_have_count(len(sweep["trials"]))
    screenshot(page, "pareto")

    # A front point opens its trial.
    page.locator(f'#pareto-scatter circle.point.front[data-trial-id="{front[-1]}"]').click()
    page.wait_for_url(f"**/trials/{front[-1]}")


def test_three_objectives_mark_the_front_in_the_parallel_coordinates(page, controller, screenshot):
    _, sessions = controller
    objectives = [ACCURACY, SIZE, FIT_TIME]
    sweep = store_sweep(sessions, objectives, name="accuracy-size-time")
    _, front = expected_front(sweep, objectives)
    assert len(front) > 1

    page.goto(f"/sweeps/{sweep['id']}")

    lines = page.locator("#parallel-chart path.pc-line")
    # One line per trial that has a hyperparameter or objective to draw (all of them here).
    expect(lines).to_have_count(len(sweep["trials"]))
    assert sorted(ids(page.locator("#parallel-chart path.pc-line.front"))) == sorted(front)
    axes = page.locator("#parallel-chart g.pc-axis")
    expect(axes).to_have_count(5)
    keys = [axes.nth(i).get_attribute("data-key") for i in range(5)]
    assert keys[2:] == [f"objective:{objective['name']}" for objective in objectives]
    expect(page.locator("#pareto-scatter")).to_have_count(0)
    expect(page.locator("#front-table tbody tr")).to_have_count(len(front))
    screenshot(page, "pareto-three-objectives")
    page.check("#front-only")
    expect(page.locator("#trials-table tbody tr")).to_have_count(len(front))
    assert sorted(ids(page.locator("#trials-table tbody tr"))) == sorted(front)


def test_sweeps_list_gives_the_front_size_of_a_multi_objective_sweep(page, controller):
    _, sessions = controller
    objectives = [ACCURACY, SIZE]
    sweep = store_sweep(sessions, objectives, name="listed-front")
    _, front = expected_front(sweep, objectives)

    page.goto("/")

    cell = page.locator(f'#sweeps-table tr[data-sweep-id="{sweep["id"]}"] .front-size')
    expect(cell).to_have_text(f"{len(front)} trials on the Pareto front")


def test_multi_objective_sweep_without_a_finished_trial_says_no_front_yet(page, controller):
    _, sessions = controller
    sweep = store_sweep(
        sessions, [ACCURACY, SIZE], trials=[("failed", None, None, None)], name="no-front"
    )

    page.goto(f"/sweeps/{sweep['id']}")

    expect(page.locator("#pareto-front")).to_contain_text("No finished trial")
    expect(page.locator("#notice")).to_be_empty()
    page.check("#front-only")
    expect(page.locator("#no-front")).to_contain_text("No trial is on the Pareto front yet")


def test_single_objective_sweep_still_shows_its_best_trial(page, controller):
    _, sessions = controller
    sweep = store_sweep(sessions, [ACCURACY], name="one-objective")
    finished = [t for t in sweep["trials"].values() if t["state"] in FINISHED and t["metrics"]]
    best = max(finished, key=lambda t: t["metrics"]["val_accuracy"])

    page.goto(f"/sweeps/{sweep['id']}")

    expect(page.locator("#best-trial")).to_have_attribute("data-trial-id", best["id"])
    expect(page.locator("#best-value")).to_have_text(f"{best['metrics']['val_accuracy']:.4g}")
    expect(page.locator("#trials-table tr.best")).to_have_attribute("data-trial-id", best["id"])
    expect(page.locator("#pareto-front")).to_have_count(0)
    expect(page.locator("#front-only")).to_have_count(0)
    expect(page.locator("#parallel-chart path.pc-line.front")).to_have_count(0)
