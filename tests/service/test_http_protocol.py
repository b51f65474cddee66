"""The controller's HTTP protocol under a real uvicorn, over real sockets: each response leaves
in one write, and nothing that must go out on its own (a HEAD answer, `100 Continue`, a streamed
chunk) is held back."""

from __future__ import annotations

import asyncio
import socket
import threading
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse

from ktsweep.service.http_protocol import HTTP_PROTOCOL, HeadHoldingTransport
from tests.service.helpers import read_response

pytestmark = pytest.mark.skipif(isinstance(HTTP_PROTOCOL, str), reason="httptools is not installed")


class RecordingTransport:
    """Passes every call to the socket's transport, recording what is written."""

    def __init__(self, transport, writes: list[bytes]):
        self._transport = transport
        self.writes = writes

    def write(self, data):
        self.writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name):
        return getattr(self._transport, name)


def make_app(second_chunk: threading.Event) -> FastAPI:
    app = FastAPI()

    @app.get("/trial")
    async def trial():
        return {"id": "t-1", "metrics": {"val_accuracy": 0.97}}

    @app.api_route("/ping", methods=["GET", "HEAD"])
    async def ping():
        return Response(b"pong", media_type="text/plain")

    @app.delete("/nothing", status_code=204)
    async def nothing():
        return Response(status_code=204)

    @app.post("/echo")
    async def echo(request: Request):
        return Response(await request.body(), media_type="application/octet-stream")

    @app.get("/stream")
    async def stream():
        async def chunks():
            yield b"first\n"
            await asyncio.to_thread(second_chunk.wait, 30)
            yield b"second\n"

        return StreamingResponse(chunks(), media_type="text/plain")

    return app


@contextmanager
def served(writes: list[bytes]):
    """A uvicorn server (in a thread) with the controller's protocol, raw writes recorded."""

    class Recorded(HTTP_PROTOCOL):
        def connection_made(self, transport):
            super().connection_made(RecordingTransport(transport, writes))

    second_chunk = threading.Event()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(make_app(second_chunk), port=port, log_level="warning", http=Recorded)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(600):
            if server.started:
                break
            threading.Event().wait(0.05)
        assert server.started
        yield port, second_chunk
    finally:
        second_chunk.set()
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture()
def server():
    """`(port, writes, second_chunk)` of a served app: `writes` lists the raw socket writes."""
    writes: list[bytes] = []
    with served(writes) as (port, second_chunk):
        yield port, writes, second_chunk


def test_a_response_leaves_in_one_write_and_reads_as_before(server):
    port, writes, _ = server
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        for _ in range(3):  # one keep-alive connection
            response = client.get("/trial")
            assert response.status_code == 200
            assert response.json() == {"id": "t-1", "metrics": {"val_accuracy": 0.97}}
        assert client.delete("/nothing").status_code == 204
    assert len(writes) == 4
    assert all(w.startswith(b"HTTP/1.1 200 OK\r\n") for w in writes[:3])
    assert all(w.endswith(b'"val_accuracy":0.97}}') for w in writes[:3])
    assert writes[3].startswith(b"HTTP/1.1 204 No Content\r\n") and writes[3].endswith(b"\r\n\r\n")


def test_a_head_answer_goes_out_alone_and_the_connection_goes_on(server):
    port, writes, _ = server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"HEAD /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"content-length: 4" in head.lower()
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock).endswith(b"\r\n\r\npong")
    assert [w.startswith(b"HTTP/1.1 200 OK") for w in writes] == [True, True]


def test_100_continue_is_not_held_back(server):
    port, _, _ = server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        # The client sends its body only once told to go on.
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            interim += sock.recv(65536)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        assert read_response(sock).endswith(b"\r\n\r\nhello")


def test_a_streamed_body_leaves_chunk_by_chunk(server):
    port, _, second_chunk = server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        # The first chunk arrives while the app still holds the second one back.
        while b"first\n" not in received:
            chunk = sock.recv(65536)
            assert chunk, "connection closed before the first chunk"
            received += chunk
        assert b"second" not in received
        second_chunk.set()
        while b"second\n" not in received:
            received += sock.recv(65536)
        while not received.endswith(b"0\r\n\r\n"):
            received += sock.recv(65536)


def test_a_held_head_goes_out_when_the_connection_closes():
    writes: list[bytes] = []

    class Sink:
        def write(self, data):
            writes.append(data)

        def close(self):
            writes.append(b"<closed>")

    transport = HeadHoldingTransport(Sink())
    transport.write(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 3\r\n\r\n")
    assert writes == []
    transport.close()
    assert writes == [
        b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 3\r\n\r\n",
        b"<closed>",
    ]
