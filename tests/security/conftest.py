"""One real `ktsweep serve` shared by the security tests, with limits small enough to reach."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tests.e2e.conftest import ServerProcess

TOKEN = "security-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Small enough that a test reaches them in a few seconds; the defaults are in SECURITY.md.
HEADER_TIMEOUT_S = 3
MAX_CONCURRENCY = 8

VALID_SPEC = {
    "name": "sleeper",
    "method": "random",
    "metric": {"name": "loss", "goal": "minimize"},
    "parameters": {"epoch_s": {"value": 1.0}},
    "run_cap": 1,
    "trial": {
        "hypermodel": "ktsweep.examples.trivial:build_model",
        "data": "ktsweep.examples.trivial:load_data",
        "fit": {"epochs": 600},
    },
    "wandb": {"mode": "disabled"},
}


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """A running `ktsweep serve` with API tokens and short header deadlines."""
    process = ServerProcess(
        tmp_path_factory.mktemp("security"),
        KTSWEEP_API_TOKENS=TOKEN,
        KTSWEEP_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S),
        KTSWEEP_MAX_CONCURRENCY=str(MAX_CONCURRENCY),
    ).start()
    yield process
    process.stop()


@pytest.fixture()
def api(server):
    """An HTTP client of the server, with the operator token; a generous timeout."""
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as client:
        yield client


def raw_connection(server: ServerProcess, timeout_s: float = 30) -> socket.socket:
    """A plain TCP connection to the server, for requests no HTTP client would send."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout_s)
    return sock


def read_until_closed(sock: socket.socket, timeout_s: float) -> bytes:
    """Everything the server sends until it closes the connection; raises TimeoutError when it
    is still open after `timeout_s`."""
    received = b""
    deadline = time.monotonic() + timeout_s
    while True:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        except TimeoutError:
            raise TimeoutError(
                f"the server kept the connection open; it sent {received!r}"
            ) from None
        if not chunk:
            return received
        received += chunk


def count_sweeps(api: httpx.Client) -> int:
    return len(api.get("/api/v1/sweeps", params={"limit": 500}).json()["items"])
