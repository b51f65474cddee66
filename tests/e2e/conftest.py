"""A real controller under uvicorn, on a real local Ray, with SQLite, in a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from service.client import Client

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """The URL of a running `ktsweep serve`, plus its database and artifact folder."""
    workdir = tmp_path_factory.mktemp("server")
    port = free_port()
    env = {
        **os.environ,
        "KTSWEEP_DATABASE_URL": f"sqlite:///{workdir / 'ktsweep.db'}",
        "KTSWEEP_ARTIFACT_DIR": str(workdir / "artifacts"),
        "WANDB_MODE": "offline",
    }
    log = open(workdir / "server.log", "wb")  # noqa: SIM115 - open for the whole session
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError((workdir / "server.log").read_text()[-5000:])
        time.sleep(0.2)
    yield {"url": url, "workdir": workdir, "artifacts": workdir / "artifacts"}
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


@pytest.fixture()
def client(server):
    with Client(server["url"]) as api:
        yield api
