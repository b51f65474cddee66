"""The web dashboard, served at `/` by the controller.

Three pages (the sweeps list, one sweep, one trial) and the scripts and styles they use, all
shipped inside this package: the browser loads nothing from anywhere but the controller. The
pages hold no data; their scripts read the JSON API under `/api/v1` with the token the user
signs in with, so every rule about who may read or change what stays in the API.
"""

from __future__ import annotations

import mimetypes
from importlib import resources

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

router = APIRouter(include_in_schema=False)

# The pages may only talk to the controller itself: no CDN, no inline code.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_STATIC = resources.files(__name__) / "static"
_MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


def _static_names() -> frozenset[str]:
    # Only files shipped in the folder itself can be served, so no path can reach outside it.
    return frozenset(item.name for item in _STATIC.iterdir() if item.is_file())


_SERVED = _static_names()


def _file(name: str) -> Response:
    if name not in _SERVED:
        raise HTTPException(status_code=404, detail=f"no dashboard file named '{name}'.")
    suffix = name[name.rfind(".") :]
    media_type = _MEDIA_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "text/plain"
    if media_type.startswith("text/"):
        media_type += "; charset=utf-8"
    return Response((_STATIC / name).read_bytes(), media_type=media_type, headers=_HEADERS)


@router.get("/")
def sweeps_page() -> Response:
    """The list of sweeps with their progress and best metric."""
    return _file("index.html")


@router.get("/sweeps/{sweep_id}")
def sweep_page(sweep_id: str) -> Response:
    """One sweep: trials table, metric chart, parallel coordinates, lifecycle buttons; for a
    multi-objective sweep, its Pareto front (and the scatter of two objectives)."""
    return _file("sweep.html")


@router.get("/trials/{trial_id}")
def trial_page(trial_id: str) -> Response:
    """One trial: hyperparameters, per-epoch history, error, W&B run and checkpoint."""
    return _file("trial.html")


@router.get("/static/{name}")
def static_file(name: str) -> Response:
    """A script, style or icon of the dashboard."""
    if name.endswith(".html"):
        raise HTTPException(status_code=404, detail=f"no dashboard file named '{name}'.")
    return _file(name)
