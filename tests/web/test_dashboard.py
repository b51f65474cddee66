"""The dashboard in a real browser, over a real controller holding a finished digits sweep."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ServerProcess
from tests.web.conftest import TOKEN, needs_chromium, sleeper_spec

pytestmark = needs_chromium


def shown(value: float) -> str:
    """A metric as the pages print it (4 significant digits)."""
    return f"{value:.4g}"


def test_sweeps_list_shows_state_progress_against_run_cap_and_best_metric(
    page, digits_sweep, screenshot
):
    sweep, trials = digits_sweep
    page.goto("/")
    row = page.locator(f'#sweeps-table tr[data-sweep-id="{sweep["id"]}"]')
    expect(row.locator(".sweep-name")).to_have_text("digits-dashboard")
    expect(row.locator(".sweep-state")).to_have_text("finished")
    expect(row.locator(".progress-count")).to_have_text("4 / 4")
    best = max(t["objective"] for t in trials)
    expect(row.locator(".best-value")).to_have_text(shown(best))
    screenshot(page, "sweeps")


def test_sweep_page_lists_every_trial_with_its_state_metric_and_the_best_trial(page, digits_sweep):
    sweep, trials = digits_sweep
    page.goto(f"/sweeps/{sweep['id']}")
    rows = page.locator("#trials-table tbody tr")
    expect(rows).to_have_count(len(trials))
    for trial in trials:
        row = page.locator(f'#trials-table tr[data-trial-id="{trial["id"]}"]')
        expect(row.locator(".trial-state")).to_have_text(trial["state"])
        expect(row.locator(".trial-metric")).to_have_text(shown(trial["objective"]))
        expect(row.locator(".trial-epochs")).to_have_text(str(trial["epochs"]))
    expect(page.locator("#best-value")).to_have_text(shown(sweep["best_trial"]["objective"]))
    expect(page.locator("#trials-table tr.best")).to_have_attribute(
        "data-trial-id", sweep["best_trial"]["id"]
    )
    expect(page.locator(".progress-count")).to_have_text("4 / 4")


def test_trials_table_sorts_by_metric_best_first_and_back(page, digits_sweep):
    sweep, trials = digits_sweep
    page.goto(f"/sweeps/{sweep['id']}")
    rows = page.locator("#trials-table tbody tr")
    expect(rows).to_have_count(len(trials))
    # Trials at the same metric stay in trial order either way.
    best_first = [t["id"] for t in sorted(trials, key=lambda t: (-t["objective"], t["number"]))]
    worst_first = [t["id"] for t in sorted(trials, key=lambda t: (t["objective"], t["number"]))]

    page.click('#trials-table th[data-key="metric"]')
    expect(page.locator('#trials-table th[data-key="metric"]')).to_have_attribute(
        "aria-sort", "descending"
    )
    assert [rows.nth(i).get_attribute("data-trial-id") for i in range(len(trials))] == best_first

    page.click('#trials-table th[data-key="metric"]')
    expect(page.locator('#trials-table th[data-key="metric"]')).to_have_attribute(
        "aria-sort", "ascending"
    )
    assert [rows.nth(i).get_attribute("data-trial-id") for i in range(len(trials))] == worst_first


def test_metric_chart_draws_one_line_per_trial_and_early_stopped_ones_end_short(
    page, digits_sweep, operator, screenshot
):
    sweep, trials = digits_sweep
    page.goto(f"/sweeps/{sweep['id']}")
    lines = page.locator("#metric-chart path.trial-line")
    expect(lines).to_have_count(len(trials))
    for trial in trials:
        steps = [entry["step"] for entry in operator.trial(trial["id"])["history"]]
        line = page.locator(f'#metric-chart path.trial-line[data-trial-id="{trial["id"]}"]')
        expect(line).to_have_attribute("data-points", str(len(steps)))
        expect(line).to_have_attribute("data-last-step", str(steps[-1]))
        expect(line).to_have_attribute("data-state", trial["state"])
        cross = page.locator(f'#metric-chart path.stop-mark[data-trial-id="{trial["id"]}"]')
        if trial["state"] == "stopped":
            assert steps[-1] < 3, "a stopped trial ran every epoch"
            expect(line).to_have_class(re.compile(r"\bstopped\b"))
            expect(cross).to_have_count(1)
        else:
            expect(cross).to_have_count(0)
    screenshot(page, "sweep")


def test_parallel_coordinates_draw_every_trial_across_each_hyperparameter_and_the_metric(
    page, digits_sweep
):
    sweep, trials = digits_sweep
    page.goto(f"/sweeps/{sweep['id']}")
    expect(page.locator("#parallel-chart path.pc-line")).to_have_count(len(trials))
    axes = page.locator("#parallel-chart g.pc-axis")
    expect(axes).to_have_count(4)
    keys = [axes.nth(i).get_attribute("data-key") for i in range(4)]
    assert keys == ["units", "dropout", "learning_rate", "__metric"]
    expect(page.locator('g.pc-axis[data-key="learning_rate"] .axis-title')).to_have_text(
        "learning_rate (log)"
    )
    best_line = page.locator("#parallel-chart path.pc-line.best")
    expect(best_line).to_have_attribute("data-trial-id", sweep["best_trial"]["id"])


def test_clicking_a_trial_opens_its_page_with_history_wandb_and_checkpoint(
    page, digits_sweep, operator, screenshot
):
    sweep, _ = digits_sweep
    best = operator.trial(sweep["best_trial"]["id"])
    page.goto(f"/sweeps/{sweep['id']}")
    page.click(f'#trials-table tr[data-trial-id="{best["id"]}"] .trial-state')
    page.wait_for_url(f"**/trials/{best['id']}")

    expect(page.locator("#trial-state")).to_have_text(best["state"])
    expect(page.locator("#trial-hyperparameters")).to_contain_text(
        str(best["hyperparameters"]["units"])
    )
    metric_names = set(best["history"][0]["metrics"])
    expect(page.locator(".history-chart")).to_have_count(len(metric_names))
    expect(page.locator(".history-chart path.trial-line").first).to_have_attribute(
        "data-points", str(len(best["history"]))
    )
    expect(page.locator("#trial-history tbody tr")).to_have_count(len(best["history"]))
    expect(page.locator("#trial-wandb .sync-command")).to_have_text(best["wandb"]["sync_command"])
    expect(page.locator("#trial-checkpoint")).to_have_text(best["checkpoint"])
    node = best["node"]
    expect(page.locator("#trial-node")).to_have_text(f"{node['hostname']} ({node['ip']})")
    screenshot(page, "trial")


def test_clicking_a_chart_line_opens_that_trial(page, digits_sweep):
    sweep, trials = digits_sweep
    trial = trials[-1]
    page.goto(f"/sweeps/{sweep['id']}")
    page.locator(f'#metric-chart path.trial-line[data-trial-id="{trial["id"]}"]').dispatch_event(
        "click"
    )
    page.wait_for_url(f"**/trials/{trial['id']}")
    expect(page.locator("h1")).to_have_text(f"Trial #{trial['number']}")


def test_pages_load_nothing_from_outside_the_controller(page, digits_sweep, dashboard_server):
    sweep, trials = digits_sweep
    for path in ("/", f"/sweeps/{sweep['id']}", f"/trials/{trials[0]['id']}"):
        response = page.goto(path)
        assert "default-src 'none'" in response.headers["content-security-policy"]
        page.wait_for_selector("table")
    outside = [url for url in page.recorder.requests if not url.startswith(dashboard_server)]
    assert outside == []
    assert any("/static/charts.js" in url for url in page.recorder.requests)


def test_pause_without_a_token_shows_the_api_401_and_leaves_the_sweep_running(
    page, running_sweep, operator
):
    page.goto(f"/sweeps/{running_sweep['id']}")
    page.click("#pause-button")
    notice = page.locator("#notice")
    expect(notice).to_contain_text("the API answered 401")
    expect(notice).to_contain_text("Sign in with a token")
    expect(page.locator("#token-input")).to_be_focused()
    assert operator.sweep(running_sweep["id"])["state"] == "running"
    expect(page.locator("#sweep-state")).to_have_text("running")


def test_signed_in_user_pauses_resumes_and_cancels_a_running_sweep(page, running_sweep, operator):
    sweep_id = running_sweep["id"]
    page.goto(f"/sweeps/{sweep_id}")
    page.fill("#token-input", TOKEN)
    page.click("#signin-button")
    expect(page.locator("#signed-in")).to_be_visible()

    page.click("#pause-button")
    expect(page.locator("#sweep-state")).to_have_text("paused")
    assert operator.sweep(sweep_id)["state"] == "paused"

    page.click("#resume-button")
    expect(page.locator("#sweep-state")).to_have_text("running")
    assert operator.sweep(sweep_id)["state"] == "running"

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#cancel-button")
    expect(page.locator("#sweep-state")).to_have_text("cancelled")
    assert operator.sweep(sweep_id)["state"] == "cancelled"
    # The running trial's new state (and that of the one waiting to start after it) arrives by
    # polling, without a reload.
    cancelled = operator.trials(sweep_id, state="cancelled")
    assert 1 <= len(cancelled) <= 2
    expect(page.locator("#trials-table .trial-state", has_text="cancelled")).to_have_count(
        len(cancelled)
    )
    expect(page.locator("#pause-button")).to_have_count(0)


def test_sweep_page_follows_a_running_trial_without_reloading(page, running_sweep):
    page.goto(f"/sweeps/{running_sweep['id']}")
    epochs = page.locator("#trials-table .trial-epochs").first
    expect(epochs).to_be_visible()
    page.evaluate("window.notReloaded = true")
    seen = int(epochs.inner_text())
    page.wait_for_function(
        "seen => Number(document.querySelector('#trials-table .trial-epochs').textContent) > seen",
        arg=seen,
    )
    expect(page.locator("#metric-chart path.trial-line")).to_have_count(1)
    assert page.evaluate("window.notReloaded") is True


@pytest.mark.parametrize("path", ["/sweeps/no-such-sweep", "/trials/no-such-trial"])
def test_unknown_ids_say_not_found_and_link_back(page, dashboard_server, path):
    page.goto(path)
    expect(page.locator("#notice")).to_contain_text("the API answered 404")
    expect(page.locator("#page")).to_contain_text("no-such-")
    expect(page.locator("#page a")).to_have_attribute("href", "/")


@pytest.fixture(scope="module")
def closed_server(tmp_path_factory):
    """A controller whose reads need the token too (no KTSWEEP_OPEN_READS)."""
    process = ServerProcess(tmp_path_factory.mktemp("closed"), KTSWEEP_API_TOKENS=TOKEN).start()
    yield process.url
    process.stop()


def test_when_reads_need_a_token_pages_say_so_and_load_after_sign_in(page, closed_server):
    page.goto(closed_server + "/")
    expect(page.locator("#notice")).to_contain_text("the API answered 401")

    page.fill("#token-input", "not-the-token")
    page.click("#signin-button")
    expect(page.locator("#notice")).to_contain_text("was not accepted")

    page.click("#signout")
    page.fill("#token-input", TOKEN)
    page.click("#signin-button")
    expect(page.locator("#page")).to_contain_text("No sweeps yet")
    expect(page.locator("#notice")).to_be_empty()


def test_sweep_without_metric_says_no_trial_is_best(page, operator):
    spec = sleeper_spec("no-metric")
    del spec["metric"]
    spec["run_cap"] = 2
    spec["trial"]["fit"]["epochs"] = 2
    sweep = operator.wait(operator.submit(spec)["id"], timeout_s=120)
    assert sweep["state"] == "finished", sweep

    page.goto(f"/sweeps/{sweep['id']}")

    expect(page.locator("#no-metric")).to_contain_text("This sweep has no metric")
    expect(page.locator("#trials-table tbody tr")).to_have_count(2)
    expect(page.locator("#trials-table tr.best")).to_have_count(0)
