"""Even connections over the API's processes: each new one goes to the process holding fewest.

With `SO_REUSEPORT` the kernel places each new connection on one of the processes by a hash of
its addresses, blind to how many each already holds: 50 connections land 28 / 22 as often as
not, and 33 / 17 now and then. Clients keep their connection for as long as they work (a
worker's reports, the dashboard, `ktsweep submit --wait`), and the processes share the cores
about evenly, so the process holding more connections answers each of them later:
`bench/api_load.py` measured p99 60.9 ms on the process with 33 connections and 30.7 ms on the
one with 17, in the same run.

Here the process the kernel picked counts the connection the moment it accepts it, before
reading a byte, in a table the processes share (changed under a file lock, which the kernel lets
go of if its holder is killed). When another process holds fewer, it passes the socket's file
descriptor to that process over a private Unix socket (`SCM_RIGHTS`), which serves the
connection as if it had accepted it. The client sees nothing. Where the hand-off cannot be made
(the other process is starting, stopped, or its channel is full), the process keeps the
connection itself.
"""

from __future__ import annotations

import array
import asyncio
import fcntl
import logging
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ktsweep.service.http_protocol import HTTP_PROTOCOL

log = logging.getLogger(__name__)

_PUBLIC_FAMILIES = (socket.AF_INET, socket.AF_INET6)


class ConnectionBalancer:
    """One API process's side of the balancing: counts, hands off, takes over.

    Args:
        counts: Connections held by each process, shared by all of them: a
            `multiprocessing` `RawArray("q", processes)`.
        index: This process's place in `counts`.
        folder: A folder only this user can read, where each process listens for the
            connections handed to it.

    Example (one per process, as `ktsweep serve --processes N` does):

    ```python
    counts = multiprocessing.get_context("spawn").RawArray("q", 2)
    balancer = ConnectionBalancer(counts, index=0, folder=private_folder)
    balanced_server(app, balancer, log_level="info").run(sockets=[shared_socket])
    ```
    """

    def __init__(self, counts: Any, index: int, folder: str):
        self.counts = counts
        self.index = index
        self.folder = folder
        # Changes to `counts` take turns on this file's lock, which the kernel lets go of if
        # its holder dies (a process lock would stay taken, and every accept wait on it).
        self._lock = os.open(os.path.join(folder, "connections.lock"), os.O_RDWR | os.O_CREAT)
        self._channels: dict[int, socket.socket] = {}  # to the other processes, opened lazily
        self._listener: socket.socket | None = None
        self._incoming: set[socket.socket] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.handed_off = 0  # connections given to other processes
        self.taken_over = 0  # connections taken from them

    def channel_path(self, index: int) -> str:
        return os.path.join(self.folder, f"connections-{index}.sock")

    @contextmanager
    def _counting(self) -> Iterator[Any]:
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            yield self.counts
        finally:
            fcntl.flock(self._lock, fcntl.LOCK_UN)

    def place(self) -> int:
        """The process that keeps a connection this one just accepted, counted there."""
        with self._counting() as counts:
            target = self.index
            for index, held in enumerate(counts):
                if held < counts[target]:
                    target = index
            counts[target] += 1
        return target

    def released(self) -> None:
        """A connection this process held has closed."""
        with self._counting() as counts:
            counts[self.index] -= 1

    def hand_off(self, sock: Any, target: int) -> bool:
        """Pass the socket `sock` (its file descriptor) to process `target`, which `place`
        chose. False when it cannot be done: the connection is then counted here again."""
        try:
            channel = self._channels.get(target)
            if channel is None:
                channel = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                try:
                    channel.connect(self.channel_path(target))
                except OSError:
                    channel.close()
                    raise
                channel.setblocking(False)
                self._channels[target] = channel
            fds = array.array("i", [sock.fileno()])
            self.handed_off += 1  # before it can arrive
            try:
                channel.sendmsg([b"c"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
            except OSError:
                self.handed_off -= 1
                raise
        except OSError as exc:
            # Starting, stopped, or its channel is full: this process serves it after all.
            broken = self._channels.pop(target, None)
            if broken is not None and not isinstance(exc, BlockingIOError):
                broken.close()
            elif broken is not None:
                self._channels[target] = broken
            with self._counting() as counts:
                counts[target] -= 1
                counts[self.index] += 1
            log.debug("kept a connection meant for API process %d: %r", target, exc)
            return False
        return True

    def start_receiving(
        self, loop: asyncio.AbstractEventLoop, adopt: Callable[[socket.socket], Any]
    ) -> None:
        """Listen for connections handed to this process; `adopt(sock)` (a coroutine) serves
        each one on `loop`."""
        path = self.channel_path(self.index)
        if os.path.exists(path):
            os.unlink(path)  # left by an earlier process of this index
        try:
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        except (AttributeError, OSError) as exc:  # a system without them: connections stay put
            log.warning("API processes cannot pass connections to this one here: %r", exc)
            return
        listener.bind(path)
        listener.listen(64)
        listener.setblocking(False)
        self._listener, self._loop, self._adopt = listener, loop, adopt
        loop.add_reader(listener.fileno(), self._accept_channel)

    def stop_receiving(self) -> None:
        if self._listener is None or self._loop is None:
            return
        self._loop.remove_reader(self._listener.fileno())
        self._listener.close()
        self._listener = None
        for channel in list(self._incoming):
            self._close_incoming(channel)
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()

    def _accept_channel(self) -> None:
        try:
            channel, _ = self._listener.accept()  # type: ignore[union-attr]
        except (BlockingIOError, InterruptedError):
            return
        channel.setblocking(False)
        self._incoming.add(channel)
        self._loop.add_reader(channel.fileno(), self._receive, channel)  # type: ignore[union-attr]

    def _receive(self, channel: socket.socket) -> None:
        while True:
            try:
                message, fds, _, _ = socket.recv_fds(channel, 16, 8)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                message, fds = b"", []
            for fd in fds:
                self.taken_over += 1
                connection = socket.socket(fileno=fd)
                connection.setblocking(False)
                self._loop.create_task(self._adopt(connection))  # type: ignore[union-attr]
            if not message and not fds:  # the other process closed its channel
                self._close_incoming(channel)
                return

    def _close_incoming(self, channel: socket.socket) -> None:
        self._incoming.discard(channel)
        if self._loop is not None:
            self._loop.remove_reader(channel.fileno())
        channel.close()


def balanced_protocol(balancer: ConnectionBalancer) -> Any:
    """The controller's HTTP protocol class (`ktsweep.service.http_protocol`) for one process of
    several: it counts its connections, and hands each one that `balancer` places elsewhere
    to that process before reading from it."""

    base = HTTP_PROTOCOL
    if isinstance(base, str):  # pragma: no cover - httptools is a dependency
        from uvicorn.protocols.http.h11_impl import H11Protocol as base

    class BalancedHttpProtocol(base):  # type: ignore[misc,valid-type]
        def __init__(self, *args, adopted: bool = False, **kwargs):
            super().__init__(*args, **kwargs)
            self._counted = adopted  # one handed over by another process is counted already
            self._handed_off = False

        def connection_made(self, transport) -> None:  # type: ignore[override]
            sock = transport.get_extra_info("socket")
            # Only the public port's connections: the leader's private Unix socket is its own.
            if not self._counted and getattr(sock, "family", None) in _PUBLIC_FAMILIES:
                self._counted = True
                target = balancer.place()
                if target != balancer.index:
                    transport.pause_reading()  # not a byte read here: the other reads it all
                    if balancer.hand_off(sock, target):
                        self._handed_off = True
                        transport.abort()  # closes this process's descriptor only
                        return
                    transport.resume_reading()
            super().connection_made(transport)

        def connection_lost(self, exc) -> None:
            if self._handed_off:
                return
            if self._counted:
                balancer.released()
            super().connection_lost(exc)

    BalancedHttpProtocol.__name__ = BalancedHttpProtocol.__qualname__ = "BalancedHttpProtocol"
    return BalancedHttpProtocol


def balanced_server(app: Any, balancer: ConnectionBalancer, **config: Any) -> Any:
    """A `uvicorn.Server` of `app` (`config`: more `uvicorn.Config` arguments) whose
    connections `balancer` places, and which also serves those other processes hand to it."""
    import uvicorn

    class BalancedServer(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets=sockets)
            if self.should_exit:
                return
            loop = asyncio.get_running_loop()

            def adopted_protocol():
                return self.config.http_protocol_class(
                    config=self.config,
                    server_state=self.server_state,
                    app_state=self.lifespan.state,
                    _loop=loop,
                    adopted=True,
                )

            async def adopt(connection: socket.socket) -> None:
                try:
                    await loop.connect_accepted_socket(adopted_protocol, connection)
                except OSError as exc:  # the client went away on the way over
                    balancer.released()
                    connection.close()
                    log.debug("a connection handed over was already gone: %r", exc)

            balancer.start_receiving(loop, adopt)

        async def shutdown(self, sockets=None) -> None:
            balancer.stop_receiving()
            await super().shutdown(sockets=sockets)

    return BalancedServer(uvicorn.Config(app, http=balanced_protocol(balancer), **config))
