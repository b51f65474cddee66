"""uvicorn's HTTP/1.1 protocol, sending each response's head and body together.

uvicorn writes a response's status line and headers as soon as the app starts the response,
then its body: two `send` calls, two TCP segments, and a client woken twice for one answer.
Under load that second system call and wake-up are a large part of what a small JSON answer
costs (one in six of an API process's busy samples, measured with `bench/api_load.py`). Here a
response's head waits on the connection until its first body bytes, and both go in one write.

A head goes out on its own only where no body follows it in the same response: a `HEAD`
request, a response that ends without body bytes, a connection closed after the head. Interim
`1xx` answers (`100 Continue`) are never held, and streamed bodies still leave chunk by chunk.

Each request's line and headers are limited in size and in the time they may take to arrive
(`ktsweep.service.compat.uvicorn.LimitedHttpToolsProtocol`).
"""

from __future__ import annotations

import asyncio
from typing import Any

try:
    from ktsweep.service.compat.uvicorn import LimitedHttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is a dependency; uvicorn's default then
    LimitedHttpToolsProtocol = None  # type: ignore[assignment,misc]


def _is_final_head(data: Any) -> bool:
    """Whether `data` is exactly a final (not 1xx) response's status line and headers."""
    return (
        isinstance(data, bytes)
        and data.startswith(b"HTTP/1.1 ")
        and not data.startswith(b"HTTP/1.1 1")
        and data.endswith(b"\r\n\r\n")
    )


class HeadHoldingTransport:
    """A connection's transport that keeps a response head back until the next write.

    Everything else is the wrapped transport's own: attributes pass through.
    """

    __slots__ = ("_transport", "_head")

    def __init__(self, transport: asyncio.Transport):
        self._transport = transport
        self._head = b""

    def write(self, data: bytes) -> None:
        if self._head:
            data, self._head = self._head + bytes(data), b""
        elif _is_final_head(data):
            self._head = data
            return
        self._transport.write(data)

    def flush(self) -> None:
        """Send a held head now (its response has no body to go with it)."""
        if self._head:
            head, self._head = self._head, b""
            self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


if LimitedHttpToolsProtocol is not None:

    class CoalescingHttpToolsProtocol(LimitedHttpToolsProtocol):
        """uvicorn's httptools protocol whose responses leave in one write each, with the
        limits on request heads of `ktsweep.service.compat.uvicorn`."""

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(HeadHoldingTransport(transport))

        def on_response_complete(self) -> None:
            self.transport.flush()
            super().on_response_complete()

    HTTP_PROTOCOL: Any = CoalescingHttpToolsProtocol
else:  # pragma: no cover
    HTTP_PROTOCOL = "auto"
