"""A small Python client for the ktsweep REST API (the CLI is built on it)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx

from ktsweep.local_token import read_token

TERMINAL_SWEEP_STATES = ("finished", "cancelled", "failed")


class ApiError(RuntimeError):
    """An error answer from the API, with its status and what it said."""

    def __init__(self, status_code: int, detail: Any):
        self.status_code = status_code
        self.detail = detail
        if isinstance(detail, list):
            text = "\n".join(f"  {p.get('path') or '<spec>'}: {p.get('msg')}" for p in detail)
            message = f"the API answered {status_code}:\n{text}"
        else:
            message = f"the API answered {status_code}: {detail}"
        super().__init__(message)


class Client:
    """Talks to a ktsweep controller.

    Args:
        url: The controller's base URL. Default `KTSWEEP_URL`, else "http://127.0.0.1:8000".
        token: Bearer token. Default `KTSWEEP_TOKEN`, else, for a controller on this machine,
            the token it made up and keeps for its user (`ktsweep.local_token`).
        timeout: Seconds per request. Default 30.

    Example:
        >>> client = Client("http://127.0.0.1:8000")  # doctest: +SKIP
        >>> sweep = client.submit("examples/digits/sweep.yaml")  # doctest: +SKIP
        >>> client.wait(sweep["id"])["state"]  # doctest: +SKIP
        'finished'
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
    ):
        url = url or os.environ.get("KTSWEEP_URL", "http://127.0.0.1:8000")
        token = token or os.environ.get("KTSWEEP_TOKEN") or read_token(url)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs) -> Any:
        response = self._http.request(method, f"/api/v1{path}", **kwargs)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text
            raise ApiError(response.status_code, detail)
        return response.json()

    def submit(self, spec: str | Path | dict[str, Any]) -> dict[str, Any]:
        """Submit a spec: a path to a YAML/JSON file, YAML text, or a dict."""
        if isinstance(spec, dict):
            return self._request("POST", "/sweeps", json=spec)
        text = Path(spec).read_text() if _is_path(spec) else str(spec)
        headers = {"Content-Type": "application/yaml"}
        return self._request("POST", "/sweeps", content=text.encode(), headers=headers)

    def sweep(self, sweep_id: str) -> dict[str, Any]:
        return self._request("GET", f"/sweeps/{sweep_id}")

    def sweeps(self, state: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        params = {"limit": limit, **({"state": state} if state else {})}
        return self._request("GET", "/sweeps", params=params)["items"]

    def trials(
        self, sweep_id: str, state: str | None = None, order: str = "number"
    ) -> list[dict[str, Any]]:
        """All of a sweep's trials (every page), by number or best metric first."""
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 500, "order": order}
            if state:
                params["state"] = state
            if cursor:
                params["cursor"] = cursor
            page = self._request("GET", f"/sweeps/{sweep_id}/trials", params=params)
            items.extend(page["items"])
            cursor = page["next_cursor"]
            if not cursor:
                return items

    def trial(self, trial_id: str) -> dict[str, Any]:
        return self._request("GET", f"/trials/{trial_id}")

    def best(self, sweep_id: str) -> dict[str, Any]:
        return self._request("GET", f"/sweeps/{sweep_id}/best")

    def pause(self, sweep_id: str) -> dict[str, Any]:
        return self._request("POST", f"/sweeps/{sweep_id}/pause")

    def resume(self, sweep_id: str) -> dict[str, Any]:
        return self._request("POST", f"/sweeps/{sweep_id}/resume")

    def cancel(self, sweep_id: str) -> dict[str, Any]:
        return self._request("POST", f"/sweeps/{sweep_id}/cancel")

    def wait(self, sweep_id: str, poll_s: float = 0.5, timeout_s: float | None = None):
        """Block until the sweep ends; returns the sweep."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            sweep = self.sweep(sweep_id)
            if sweep["state"] in TERMINAL_SWEEP_STATES:
                return sweep
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"sweep {sweep_id} still {sweep['state']} after {timeout_s} s")
            time.sleep(poll_s)


def _is_path(spec: str | Path) -> bool:
    if isinstance(spec, Path):
        return True
    return "\n" not in spec and len(spec) < 4096 and Path(spec).is_file()
