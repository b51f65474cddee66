"""uvicorn's httptools protocol with limits on each request's line and headers.

Why this touches uvicorn's internals: its public settings do not limit a request's head under
the httptools protocol the controller runs (`HTTP_PROTOCOL`, the class given to uvicorn's `http=`
option, which `--workers N` processes receive too).
`h11_max_incomplete_event_size` applies to the h11 protocol only, httptools buffers a header
of any size (a 200 MB value was held whole), and no setting bounds how long a client may take
to send its head: `timeout_keep_alive` starts only once a response has gone, so a connection
that sends nothing, or trickles its headers a byte at a time (slowloris), was never closed.

What this relies on, all of `uvicorn.protocols.http.httptools_impl.HttpToolsProtocol`
(checked by tests/compat/test_uvicorn.py):

- the asyncio callbacks `connection_made`, `connection_lost`, `data_received`, and the
  parser's `on_message_begin`, `on_headers_complete`, `on_message_complete`, overridden here
  and called through `super()` (`data_received` is not, for a head refused before parsing);
- the attributes `config` (the `uvicorn.Config`), `transport`, `loop`, `cycle` (with
  `response_complete`) and `limit_concurrency` (read where the head is complete, to answer 503);
- `Config.loaded_app`, the app uvicorn built (from an import string under `--workers`), whose
  wrapping middleware keep the app they wrap as `.app`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


@dataclass(frozen=True)
class HeadLimits:
    """Limits on the connections of one server.

    Args:
        max_header_bytes: Largest request line plus headers; larger gets 431. Default 16 KiB.
        header_timeout_s: Most seconds to send a request's line and headers, from when the
            connection opens or the request's first byte arrives; slower is closed with 408.
            Default 10.
        max_concurrency: Most connections and requests in flight; one more gets 503. Default
            1000. `uvicorn.Config(limit_concurrency=...)` wins when given.
    """

    max_header_bytes: int = 16 * 1024
    header_timeout_s: float = 10.0
    max_concurrency: int = 1000

    @classmethod
    def of(cls, config: Any) -> HeadLimits:
        """The limits of the app a `uvicorn.Config` serves: its `app.state.settings` (see
        `ktsweep.service.app.create_app`), or the defaults for any other app."""
        settings = _settings_of(config)
        if settings is None:
            return cls()
        return cls(
            max_header_bytes=settings.max_header_bytes,
            header_timeout_s=settings.header_timeout_s,
            max_concurrency=settings.max_concurrency,
        )


def _settings_of(config: Any) -> Any:
    """`app.state.settings` of the app `config` serves: the app given, or (given as an import
    string) the one uvicorn loaded, under the middleware uvicorn wraps it in."""
    app = config.app if not isinstance(config.app, str) else getattr(config, "loaded_app", None)
    for _ in range(10):  # a few wrapping layers at most
        if app is None:
            return None
        settings = getattr(getattr(app, "state", None), "settings", None)
        if settings is not None:
            return settings
        app = getattr(app, "app", None)
    return None


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol that closes connections slow or large in their heads.

    A request's line and headers must arrive within `header_timeout_s` of the connection
    opening (or of the request's first byte, on a kept-alive connection), else the connection
    is answered 408 and closed; and must fit in `max_header_bytes`, else 431 and closed,
    without buffering the rest. Once more than `max_concurrency` connections and requests are
    in flight, uvicorn answers 503 (its own `limit_concurrency`, set here when the server's
    config leaves it unset). Limits come from `HeadLimits.of(config)`.
    """

    def __init__(self, config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        limits = HeadLimits.of(config)
        self._max_head_bytes = limits.max_header_bytes
        self._head_timeout_s = limits.header_timeout_s
        if self.limit_concurrency is None:
            self.limit_concurrency = limits.max_concurrency
        self._reading_head = True
        self._head_bytes = 0
        self._head_tail = b""  # the last bytes read of the head, where its end may straddle
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._reading_head and self._head_too_large(data):
            self._refuse(
                431,
                b"Request Header Fields Too Large",
                f"The request line and headers are larger than this server accepts "
                f"({self._max_head_bytes} bytes); send fewer or shorter headers. The operator "
                "sets the limit with KTSWEEP_MAX_HEADER_BYTES.",
            )
            return
        super().data_received(data)

    def _head_too_large(self, data: bytes) -> bool:
        """Whether the head being read, with `data`, passes the limit: counted up to its end
        (a blank line) when `data` holds it, so a head that arrives whole in one read is
        measured too, and checked before the parser takes it."""
        seen = self._head_tail + data
        end = seen.find(b"\r\n\r\n")
        if end >= 0:
            size = self._head_bytes + end + 4 - len(self._head_tail)
        else:
            size = self._head_bytes + len(data)
        self._head_bytes += len(data)
        self._head_tail = seen[-3:]
        return size > self._max_head_bytes

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head = True
        if self._head_deadline is None:
            self._start_head_deadline()

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._head_bytes = 0
        self._head_tail = b""
        self._cancel_head_deadline()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # What comes next on this connection is the next request's head.
        self._reading_head = True
        self._head_bytes = 0
        self._head_tail = b""

    def _start_head_deadline(self) -> None:
        self._head_deadline = self.loop.call_later(self._head_timeout_s, self._head_too_slow)

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        self._refuse(
            408,
            b"Request Timeout",
            f"The request line and headers did not arrive within {self._head_timeout_s:g} "
            "seconds; send them at once. The operator sets the limit with "
            "KTSWEEP_HEADER_TIMEOUT_S.",
        )

    def _refuse(self, status: int, reason: bytes, message: str) -> None:
        """Answer `status` (unless a response is under way) and close the connection."""
        self._reading_head = False
        self._cancel_head_deadline()
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            body = message.encode()
            head = b"HTTP/1.1 %d %s\r\n" % (status, reason) + (
                b"content-type: text/plain; charset=utf-8\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
            )
            self.transport.write(head + body)
        self.transport.close()


# What `uvicorn.Config(http=...)` is given: the class itself (every uvicorn the project allows
# takes one; import strings only from later versions). Each worker process of
# `uvicorn.run(..., workers=N)` receives it by reference and imports this module for itself.
HTTP_PROTOCOL = LimitedHttpToolsProtocol
