"""Item 3 of the trust boundary: with no tokens configured, a web page the user opens cannot
drive the controller on their machine. The controller makes up a token (as Jupyter does),
keeps it in a file only its user reads, and refuses cross-site writes and non-JSON/YAML bodies.
The attack is the review's: a cross-site `fetch(..., {mode: "no-cors"})` with
`Content-Type: text/plain`, sent by a page in headless Chromium."""

from __future__ import annotations

import http.server
import json
import os
import stat
import subprocess
import sys
import threading

import httpx
import pytest
import yaml

from ktsweep.client import Client
from ktsweep.local_token import token_file
from tests.e2e.conftest import REPO, ServerProcess, free_port
from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS, needs_chromium

SPEC = {
    "name": "from-a-web-page",
    "method": "random",
    "metric": {"name": "loss", "goal": "minimize"},
    "parameters": {"epoch_s": {"value": 0.1}},
    "run_cap": 1,
    "trial": {
        "hypermodel": "ktsweep.examples.trivial:build_model",
        "data": "ktsweep.examples.trivial:load_data",
        "fit": {"epochs": 2},
    },
    "wandb": {"mode": "disabled"},
}

ATTACK_PAGE = """<!doctype html><title>cute cats</title><script>
window.attack = async (url, body) => {
  for (const path of ["/api/v1/sweeps", "/api/v1/sweeps?x=1"]) {
    await fetch(url + path, {method: "POST", mode: "no-cors",
                             headers: {"Content-Type": "text/plain"}, body});
  }
  return "sent";
};
</script>"""


@pytest.fixture(scope="module")
def open_server(tmp_path_factory):
    """`ktsweep serve` on loopback with no KTSWEEP_API_TOKENS, as a user starts it."""
    env = {"KTSWEEP_API_TOKENS": ""}
    process = ServerProcess(tmp_path_factory.mktemp("no-tokens"), **env).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def attacker_site(tmp_path_factory):
    """Another site (another origin): a page with the attack, on its own port."""
    folder = tmp_path_factory.mktemp("attacker")
    (folder / "index.html").write_text(ATTACK_PAGE)
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(folder))  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://localhost:{httpd.server_address[1]}/index.html"
    httpd.shutdown()


def sweeps(server: ServerProcess) -> list[dict]:
    with Client(server.url) as api:  # the token comes from the file, as for the user's CLI
        return api.sweeps()


def test_a_made_up_token_is_kept_for_this_user_alone_and_printed_as_a_ready_url(open_server):
    path = token_file(open_server.port)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    token = path.read_text().strip()
    assert len(token) >= 40
    assert f"http://127.0.0.1:{open_server.port}/?token={token}" in open_server.log()
    assert httpx.get(f"{open_server.url}/api/v1/sweeps").status_code == 401


def test_the_cli_on_this_machine_finds_the_token_itself(open_server):
    env = {k: v for k, v in os.environ.items() if k not in ("KTSWEEP_TOKEN", "PYTHONPATH")}
    done = subprocess.run(
        [sys.executable, "-m", "ktsweep.service.cli", "status", "--url", open_server.url],
        cwd=REPO,
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@needs_chromium
def test_a_cross_site_no_cors_post_from_a_web_page_submits_nothing(open_server, attacker_site):
    from playwright.sync_api import sync_playwright

    before = sweeps(open_server)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(attacker_site)
        assert (
            page.evaluate(
                "([u, b]) => window.attack(u, b)", [open_server.url, yaml.safe_dump(SPEC)]
            )
            == "sent"
        )
        browser.close()
    assert sweeps(open_server) == before


def test_a_write_from_another_origin_is_refused_even_with_the_token(open_server):
    answer = httpx.post(
        f"{open_server.url}/api/v1/sweeps",
        json=SPEC,
        headers={**open_server.auth, "Origin": "http://cute-cats.example"},
    )
    assert answer.status_code == 403
    assert "KTSWEEP_ALLOWED_ORIGINS" in answer.json()["detail"]


@pytest.mark.parametrize("media_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_that_is_neither_json_nor_yaml_is_refused(open_server, media_type):
    headers = dict(open_server.auth)
    if media_type:
        headers["Content-Type"] = media_type
    answer = httpx.post(
        f"{open_server.url}/api/v1/sweeps", content=json.dumps(SPEC), headers=headers
    )
    assert answer.status_code == 415
    assert "application/json" in answer.json()["detail"]


def test_the_controllers_own_origin_and_yaml_may_write(open_server):
    answer = httpx.post(
        f"{open_server.url}/api/v1/sweeps",
        content=yaml.safe_dump(SPEC),
        headers={
            **open_server.auth,
            "Content-Type": "application/yaml",
            "Origin": open_server.url,
        },
        timeout=120,
    )
    assert answer.status_code == 201, answer.text
    httpx.post(
        f"{open_server.url}/api/v1/sweeps/{answer.json()['id']}/cancel", headers=open_server.auth
    )


@needs_chromium
def test_the_ready_url_signs_the_dashboard_in(open_server):
    from playwright.sync_api import expect, sync_playwright

    token = token_file(open_server.port).read_text().strip()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"{open_server.url}/?token={token}")
        expect(page.locator("#sweeps-table, .empty").first).to_be_visible()
        assert "token=" not in page.url
        assert page.evaluate("() => sessionStorage.getItem('ktsweep.token')") == token
        browser.close()


def test_metrics_and_readyz_details_need_the_token(open_server):
    assert httpx.get(f"{open_server.url}/metrics").status_code == 401
    assert httpx.get(f"{open_server.url}/metrics", headers=open_server.auth).status_code == 200
    assert httpx.get(f"{open_server.url}/readyz").json() == {"status": "ready"}


@needs_chromium
def test_the_api_docs_run_sandboxed_away_from_the_dashboards_token(open_server):
    from playwright.sync_api import sync_playwright

    token = token_file(open_server.port).read_text().strip()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"{open_server.url}/?token={token}")  # the dashboard keeps the token
        page.wait_for_function("() => sessionStorage.getItem('ktsweep.token') !== null")
        page.goto(f"{open_server.url}/docs")
        assert page.evaluate("() => window.origin") == "null"
        reads_storage = page.evaluate(
            "() => { try { return sessionStorage.getItem('ktsweep.token'); }"
            " catch (e) { return 'refused'; } }"
        )
        assert reads_storage == "refused"
        browser.close()
    schema = httpx.get(f"{open_server.url}/openapi.json")
    assert schema.headers["access-control-allow-origin"] == "*"
    assert "/api/v1/sweeps" in schema.json()["paths"]
