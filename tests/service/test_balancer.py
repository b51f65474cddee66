"""Connections spread evenly over the API's processes (`ktsweep.service.balancer`), for real:
uvicorn servers sharing one port with `SO_REUSEPORT`, each with its own balancer, the connections
handed between them as file descriptors over their Unix sockets. The servers run in threads
of this process here (the descriptors pass the same way); `tests/e2e/test_serve_processes.py`
checks `ktsweep serve --processes 2` itself."""

from __future__ import annotations

import collections
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
from contextlib import ExitStack, contextmanager

import pytest
from fastapi import FastAPI, Request

from ktsweep.service.balancer import ConnectionBalancer, balanced_server
from ktsweep.service.processes import bind_tcp, bind_unix
from tests.service.helpers import read_response
from tests.waiting import wait_for


def make_app(name: str) -> FastAPI:
    app = FastAPI()

    @app.get("/who")
    async def who():
        return {"server": name}

    @app.post("/echo")
    async def echo(request: Request):
        body = await request.body()
        return {"server": name, "length": len(body), "tail": body[-16:].decode()}

    return app


@contextmanager
def serving(index: int, port: int, counts, folder: str):
    """Server `index` of the group on `port`, in a thread; yields its balancer."""
    balancer = ConnectionBalancer(counts, index, folder)
    server = balanced_server(make_app(f"server-{index}"), balancer, log_level="warning")
    # Like the leader's, a private Unix socket beside the shared port.
    sockets = [bind_tcp("127.0.0.1", port), bind_unix(os.path.join(folder, f"private-{index}"))]
    thread = threading.Thread(target=server.run, kwargs={"sockets": sockets}, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: server.started, timeout_s=30)
        yield balancer
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture()
def group(tmp_path):
    """`start(indexes)`: servers of a group of two on one port; returns (port, counts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    counts = multiprocessing.get_context("spawn").RawArray("q", 2)
    with ExitStack() as stack:

        def start(indexes):
            balancers = [
                stack.enter_context(serving(i, port, counts, str(tmp_path))) for i in indexes
            ]
            return port, counts, balancers

        yield start


def send(sock: socket.socket, method: str, path: str, body: bytes = b"") -> None:
    head = f"{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {len(body)}\r\n\r\n"
    sock.sendall(head.encode() + body)


def answer(sock: socket.socket) -> dict:
    """The JSON body of one response read off a keep-alive connection."""
    head, _, body = read_response(sock).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return json.loads(body)


def ask_on_new_connections(port: int, number: int, connections: list) -> list[str]:
    """Open `number` connections (kept in `connections`), ask each which server answers."""
    fresh = [socket.create_connection(("127.0.0.1", port)) for _ in range(number)]
    connections += fresh
    for sock in fresh:
        send(sock, "GET", "/who")
    return [answer(sock)["server"] for sock in fresh]


def test_connections_end_up_even_and_are_served_whole_where_they_land(group):
    port, counts, balancers = group([0, 1])
    body = b"x" * 200_000 + b"the-last-bytes!!"
    connections = []
    try:
        # Each request is written the moment its connection opens: its bytes are already
        # waiting on the socket when a server hands the connection over.
        for number in range(20):
            sock = socket.create_connection(("127.0.0.1", port))
            if number % 2:
                send(sock, "POST", "/echo", body)
            else:
                send(sock, "GET", "/who")
            connections.append(sock)
        first = [answer(sock) for sock in connections]
        assert collections.Counter(a["server"] for a in first) == {"server-0": 10, "server-1": 10}
        assert all(
            a["length"] == len(body) and a["tail"] == "the-last-bytes!!" for a in first[1::2]
        )
        assert list(counts) == [10, 10]
        # The kernel placed them as it liked; every one beyond a server's share moved.
        assert sum(b.handed_off for b in balancers) == sum(b.taken_over for b in balancers)

        # Each stays where it landed, keep-alive.
        for sock in connections:
            send(sock, "GET", "/who")
        assert [answer(sock)["server"] for sock in connections] == [a["server"] for a in first]

        # Closed connections leave their server's count; new ones fill that server up again.
        on_zero = [s for s, a in zip(connections, first, strict=True) if a["server"] == "server-0"]
        for sock in on_zero[:6]:
            connections.remove(sock)
            sock.close()
        assert wait_for(lambda: list(counts) == [4, 10], timeout_s=10), list(counts)
        assert ask_on_new_connections(port, 6, connections) == ["server-0"] * 6
        assert list(counts) == [10, 10]
    finally:
        for sock in connections:
            sock.close()
    assert wait_for(lambda: list(counts) == [0, 0], timeout_s=10), list(counts)


def test_a_server_that_cannot_take_a_connection_leaves_it_where_it_landed(group):
    # Server 1 of the group is not running yet (starting, or gone): nothing can go to it.
    port, counts, (first,) = group([0])
    connections: list[socket.socket] = []
    try:
        assert ask_on_new_connections(port, 6, connections) == ["server-0"] * 6
        assert list(counts) == [6, 0]
        assert first.handed_off == 0

        # Once it runs, it takes every new connection until it holds as many, wherever the
        # kernel puts them: those put on server 0 are handed over. Not those on server 0's
        # private socket: they are not the public port's.
        _, _, (second,) = group([1])
        with socket.socket(socket.AF_UNIX) as private:
            private.connect(os.path.join(first.folder, "private-0"))
            send(private, "GET", "/who")
            assert answer(private)["server"] == "server-0"
            assert list(counts) == [6, 0]
        assert ask_on_new_connections(port, 6, connections) == ["server-1"] * 6
        assert list(counts) == [6, 6]
        assert first.handed_off == second.taken_over
    finally:
        for sock in connections:
            sock.close()
    assert wait_for(lambda: list(counts) == [0, 0], timeout_s=10), list(counts)


def test_a_process_killed_while_counting_does_not_stop_the_others(tmp_path):
    counts = multiprocessing.get_context("spawn").RawArray("q", 2)
    balancer = ConnectionBalancer(counts, 0, str(tmp_path))
    # Another API process takes the count's lock and dies holding it (SIGKILL: no clean-up).
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({os.path.join(str(tmp_path), 'connections.lock')!r}, os.O_RDWR)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "time.sleep(600)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        placed: list[int] = []
        counting = threading.Thread(target=lambda: placed.append(balancer.place()), daemon=True)
        counting.start()
        counting.join(timeout=0.5)
        assert placed == []  # it waits its turn while the other holds the lock
        os.kill(holder.pid, signal.SIGKILL)
        counting.join(timeout=30)
        assert placed == [0]
        assert list(counts) == [1, 0]
    finally:
        holder.kill()
        holder.wait(timeout=30)
