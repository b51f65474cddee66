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

from ktsweep.client import Client
from ktsweep.local_token import read_token

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`ktsweep serve` in a subprocess, with its own database, artifacts and log."""

    def __init__(
        self,
        workdir: Path,
        database_url: str | None = None,
        args: tuple[str, ...] = (),
        **env: str,
    ):
        self.workdir = workdir
        self.args = args  # more options of `ktsweep serve` (say "--no-scheduler")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.artifacts = workdir / "artifacts"
        self.log_path = workdir / f"server-{self.port}.log"
        self.env = {
            **os.environ,
            "KTSWEEP_DATABASE_URL": database_url or f"sqlite:///{workdir / 'ktsweep.db'}",
            "KTSWEEP_ARTIFACT_DIR": str(self.artifacts),
            "WANDB_MODE": "offline",
            **env,
        }
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 120) -> ServerProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ktsweep.service.cli",
                    "serve",
                    "--port",
                    str(self.port),
                    *self.args,
                ],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                raise RuntimeError(self.log_path.read_text()[-5000:])
            time.sleep(0.2)

    @property
    def token(self) -> str | None:
        """The operator token: the one configured, else the one the server made up."""
        configured = self.env.get("KTSWEEP_API_TOKENS", "").split(",")[0].strip()
        return configured or read_token(self.url)

    @property
    def auth(self) -> dict[str, str]:
        """`Authorization` header with the operator token."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


class SchedulerProcess:
    """`ktsweep scheduler` in a subprocess, for the API at `api_url`, with its own log."""

    def __init__(self, workdir: Path, database_url: str, api_url: str, name: str, **env: str):
        self.log_path = workdir / f"scheduler-{name}.log"
        self.env = {
            **os.environ,
            "KTSWEEP_DATABASE_URL": database_url,
            "KTSWEEP_ARTIFACT_DIR": str(workdir / "artifacts"),
            "KTSWEEP_API_URL": api_url,
            "WANDB_MODE": "offline",
            **env,
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> SchedulerProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ktsweep.service.cli", "scheduler"],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """A running `ktsweep serve`: its URL, work folder and artifact folder."""
    process = ServerProcess(tmp_path_factory.mktemp("server")).start()
    yield {
        "url": process.url,
        "workdir": process.workdir,
        "artifacts": process.artifacts,
        "auth": process.auth,
    }
    process.stop()


@pytest.fixture()
def client(server):
    with Client(server["url"]) as api:
        yield api
