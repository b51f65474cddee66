"""A request body larger than its route allows is refused with 413 before the app reads it."""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException


class BodyTooLargeError(HTTPException):
    """A body without `Content-Length` (chunked) grew past its limit while it was read.

    An `HTTPException`, so that FastAPI passes it on from its body parsing and answers 413.
    """

    def __init__(self, detail: str):
        super().__init__(status_code=413, detail=detail)


class BodySizeLimit:
    """ASGI middleware that refuses request bodies larger than a limit, with 413.

    It acts before the app sees the request: before routing, authentication or parsing, so an
    unauthenticated client cannot make the controller read or hold a large body. A request
    whose `Content-Length` is over the limit is answered at once, without reading a byte of
    the body, and its connection is closed. A body sent without a length (chunked) is counted
    while the app reads it, and refused once the count passes the limit.

    Sweep specs (`POST` to `spec_path`) may be up to `spec_bytes`; every other body (worker
    reports and heartbeats above all) up to `other_bytes`.

    Args:
        app: The ASGI app to protect.
        spec_bytes: Largest spec body, in bytes (KTSWEEP_MAX_SPEC_BYTES, default 1 MiB).
        other_bytes: Largest other body, in bytes (KTSWEEP_MAX_REPORT_BYTES, default 16 KiB).
        spec_path: The path specs are submitted to. Default `/api/v1/sweeps`.

    Example:

    ```python
    app.add_middleware(BodySizeLimit, spec_bytes=1 << 20, other_bytes=16 << 10)
    ```
    """

    def __init__(
        self, app: Any, spec_bytes: int, other_bytes: int, spec_path: str = "/api/v1/sweeps"
    ):
        self.app = app
        self.spec_bytes = spec_bytes
        self.other_bytes = other_bytes
        self.spec_path = spec_path

    def _limit(self, scope: dict[str, Any]) -> tuple[int, str]:
        if scope["method"] == "POST" and scope["path"].rstrip("/") == self.spec_path:
            return self.spec_bytes, "KTSWEEP_MAX_SPEC_BYTES"
        return self.other_bytes, "KTSWEEP_MAX_REPORT_BYTES"

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = self._limit(scope)
        length = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
                break
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                await _answer(
                    send,
                    400,
                    "the Content-Length header is not a number; send the "
                    "body's length in bytes, or leave the header out.",
                )
                return
            if size > limit:
                await _answer(send, 413, _too_large(limit, setting))
                return
        received = 0
        response_started = False

        async def receive_within_limit():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(_too_large(limit, setting))
            return message

        async def send_noting_start(message):
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive_within_limit, send_noting_start)
        except BodyTooLargeError as exc:
            if response_started:
                raise
            await _answer(send, 413, exc.detail)


def _too_large(limit: int, setting: str) -> str:
    return (
        f"the request body is larger than this endpoint accepts ({limit} bytes); send a "
        f"smaller one. The controller's operator sets the limit with {setting}."
    )


async def _answer(send, status: int, detail: str) -> None:
    """An error answer that also closes the connection: the rest of the body is not read."""
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
