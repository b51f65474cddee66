"""The dashboard's files: all shipped in the package, served only from there, no outside URLs."""

from __future__ import annotations

import re
from importlib import resources

import httpx
import pytest

STATIC = resources.files("ktsweep.service.web") / "static"
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


def static_files() -> dict[str, str]:
    return {item.name: item.read_text() for item in STATIC.iterdir() if item.is_file()}


def test_every_script_style_and_icon_a_page_names_is_in_the_package():
    files = static_files()
    referenced = set()
    for name, text in files.items():
        if name.endswith((".html", ".js")):
            referenced |= set(re.findall(r"""["'](/static/[^"']+)["']""", text))
    assert referenced, "the pages name no static files"
    missing = sorted(path for path in referenced if path.removeprefix("/static/") not in files)
    assert missing == []


def test_no_dashboard_file_points_outside_the_controller():
    for name, text in static_files().items():
        urls = set(re.findall(r"\b(?:https?:)?//[\w.-]+", text.replace(SVG_NAMESPACE, "")))
        assert urls == set(), f"{name} refers to {urls}; the dashboard must work offline"


@pytest.mark.parametrize(
    ("path", "status", "media_type"),
    [
        ("/", 200, "text/html"),
        ("/sweeps/any", 200, "text/html"),
        ("/trials/any", 200, "text/html"),
        ("/static/charts.js", 200, "text/javascript"),
        ("/static/style.css", 200, "text/css"),
        ("/static/..%2F__init__.py", 404, None),
        ("/static/__init__.py", 404, None),
        ("/static/index.html", 404, None),
    ],
)
def test_pages_and_static_files_are_served_and_nothing_else(
    dashboard_server, path, status, media_type
):
    response = httpx.get(dashboard_server + path)
    assert response.status_code == status
    if media_type:
        assert response.headers["content-type"].startswith(media_type)
        assert "connect-src 'self'" in response.headers["content-security-policy"]


def test_api_keeps_its_paths_next_to_the_pages(dashboard_server):
    response = httpx.get(dashboard_server + "/api/v1/sweeps/no-such-sweep")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
