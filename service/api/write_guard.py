"""Writes from web pages the controller did not serve are refused before anything reads them.

A page on another site can make the user's browser send a "simple" cross-site request that
needs no CORS preflight: `fetch(url, {method: "POST", mode: "no-cors", body})` goes out with
`Content-Type: text/plain` and the user's network position (loopback included). So, on every
write (`POST`, `PUT`, `PATCH`, `DELETE`):

- a request whose `Origin` is not the controller's own (nor one in `KTSWEEP_ALLOWED_ORIGINS`)
  gets 403: browsers always send `Origin` on such requests; non-browser clients send none;
- a body must be JSON or YAML (`application/json`, `application/yaml`, `application/x-yaml`,
  `text/yaml`): anything else gets 415, since no browser sends those without a preflight.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
BODY_TYPES = frozenset(
    {"application/json", "application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"}
)


class WriteGuard:
    """ASGI middleware: refuses cross-site writes and writes whose body is neither JSON nor YAML.

    Args:
        app: The ASGI app it wraps.
        allowed_origins: Origins (`scheme://host[:port]`) allowed to write besides the
            controller's own, e.g. a dashboard served elsewhere. Default none.
    """

    def __init__(self, app, allowed_origins: Iterable[str] = ()):
        self.app = app
        self.allowed_origins = {origin.rstrip("/").lower() for origin in allowed_origins}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in WRITE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = {name.decode("latin-1").lower(): value for name, value in scope["headers"]}
        origin = headers.get("origin")
        if origin is not None:
            origin_text = origin.decode("latin-1").rstrip("/").lower()
            own = _own_origin(scope, headers)
            if origin_text != own and origin_text not in self.allowed_origins:
                await _refuse(
                    send,
                    403,
                    f"a write from the web page at {origin_text} was refused: only pages this "
                    "controller serves may write to it. To allow another origin, the operator "
                    "can list it in KTSWEEP_ALLOWED_ORIGINS.",
                )
                return
        if _has_body(headers):
            media_type = headers.get("content-type", b"").decode("latin-1")
            media_type = media_type.split(";", 1)[0].strip().lower()
            if media_type not in BODY_TYPES:
                await _refuse(
                    send,
                    415,
                    f"a request body of type '{media_type or 'none'}' is not accepted; send "
                    "JSON (Content-Type: application/json) or YAML (application/yaml).",
                )
                return
        await self.app(scope, receive, send)


def _own_origin(scope, headers: dict[str, bytes]) -> str:
    host = headers.get("host", b"").decode("latin-1").lower()
    return f"{scope.get('scheme', 'http')}://{host}"


def _has_body(headers: dict[str, bytes]) -> bool:
    length = headers.get("content-length")
    if length is not None:
        return length.strip() not in (b"", b"0")
    return b"chunked" in headers.get("transfer-encoding", b"").lower()


async def _refuse(send, status: int, message: str) -> None:
    body = json.dumps({"detail": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
