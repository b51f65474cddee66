"""The dashboard against a real controller: uvicorn, local Ray, SQLite, offline W&B.

The controller runs with a bearer token and open reads, as an operator would expose it to a team:
anyone can look, only a signed-in user can pause, resume or cancel. Pages are driven by
Playwright in the system's Chromium (no browser is downloaded).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml

from ktsweep.client import Client
from tests.e2e.conftest import ServerProcess

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("KTSWEEP_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "dashboard-test-token"
# Where the tests save screenshots of each page when set (the README's come from here).
SCREENSHOT_DIR = os.environ.get("KTSWEEP_SCREENSHOT_DIR")

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"no Chromium at {CHROMIUM}: install it with `apt-get install -y chromium` "
    "(or point KTSWEEP_TEST_CHROMIUM at one) to run the dashboard's browser tests.",
)


def small_digits_spec() -> dict:
    """The example sweep, cut to 4 trials of 3 epochs, with hyperband so some stop early."""
    spec = yaml.safe_load((REPO / "examples" / "digits" / "sweep.yaml").read_text())
    spec.update(name="digits-dashboard", run_cap=4, parallelism=2)
    spec["trial"]["fit"]["epochs"] = 3
    spec["early_terminate"] = {"type": "hyperband", "min_iter": 1, "eta": 2}
    return spec


def sleeper_spec(name: str) -> dict:
    """A sweep whose trials only sleep (0.25 s an epoch, 400 epochs): it stays running."""
    return {
        "name": name,
        "method": "random",
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"epoch_s": {"value": 0.25}},
        "run_cap": 3,
        "parallelism": 1,
        "trial": {
            "hypermodel": "ktsweep.examples.trivial:build_model",
            "data": "ktsweep.examples.trivial:load_data",
            "fit": {"epochs": 400},
            "resources": {"cpu": 1},
        },
        "wandb": {"mode": "disabled"},
        "callbacks": {"metrics_logger": None},
    }


@pytest.fixture(scope="session")
def dashboard_server(tmp_path_factory):
    """`ktsweep serve` with one API token and open reads: its URL."""
    process = ServerProcess(
        tmp_path_factory.mktemp("dashboard"), KTSWEEP_API_TOKENS=TOKEN, KTSWEEP_OPEN_READS="1"
    ).start()
    yield process.url
    process.stop()


@pytest.fixture(scope="session")
def operator(dashboard_server):
    """An API client holding the token."""
    with Client(dashboard_server, token=TOKEN) as api:
        yield api


@pytest.fixture(scope="session")
def digits_sweep(operator):
    """A finished small digits sweep: (sweep, trials by number)."""
    sweep = operator.submit(small_digits_spec())
    final = operator.wait(sweep["id"], timeout_s=300)
    assert final["state"] == "finished", final
    return final, operator.trials(sweep["id"])


@pytest.fixture()
def running_sweep(operator):
    """A sweep with a trial running now; cancelled afterwards if the test left it going."""
    sweep = operator.submit(sleeper_spec("sleeper"))
    deadline = time.monotonic() + 120
    while not operator.trials(sweep["id"], state="running"):
        assert time.monotonic() < deadline, "no trial of the sleeper sweep started in 120 s"
        time.sleep(0.2)
    yield operator.sweep(sweep["id"])
    if operator.sweep(sweep["id"])["state"] in ("running", "paused"):
        operator.cancel(sweep["id"])


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium from the system, through Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class PageRecorder:
    """What a page asked the network for, and the script errors it hit."""

    def __init__(self):
        self.requests: list[str] = []
        self.errors: list[str] = []


@pytest.fixture()
def page(browser, dashboard_server):
    """A fresh browser tab (nothing signed in) that records its requests and script errors."""
    context = browser.new_context(
        viewport={"width": 1400, "height": 900}, base_url=dashboard_server
    )
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    recorder = PageRecorder()
    tab.on("request", lambda request: recorder.requests.append(request.url))
    tab.on("pageerror", lambda error: recorder.errors.append(str(error)))
    tab.recorder = recorder
    yield tab
    context.close()
    assert recorder.errors == [], f"the page raised script errors: {recorder.errors}"


@pytest.fixture()
def screenshot():
    """Saves a full-page screenshot as `dashboard-<name>.png` when KTSWEEP_SCREENSHOT_DIR is set."""

    def save(tab, name: str) -> None:
        if SCREENSHOT_DIR:
            Path(SCREENSHOT_DIR).mkdir(parents=True, exist_ok=True)
            tab.screenshot(path=str(Path(SCREENSHOT_DIR) / f"dashboard-{name}.png"), full_page=True)

    return save
