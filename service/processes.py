"""Serving the API from several processes: one leader that also schedules, and followers.

One Python process serves about a core's worth of requests. `ktsweep serve --processes N`
(or `KTSWEEP_API_PROCESSES=N`) starts N processes that all listen on the same port (the kernel
spreads new connections over them, `SO_REUSEPORT`, and `ktsweep.service.balancer` evens out what it
spreads: each connection ends up on the process holding fewest):

- the **leader** runs the whole controller: the API, the scheduler, the Ray driver;
- each **follower** serves what needs no scheduler itself, straight from the database: every
  read (sweeps, trials, the dashboard), worker reports and heartbeats. What only the scheduler
  can do it hands to the leader over a private Unix socket: submitting a sweep, pause, resume
  and cancel, `/readyz` and `/metrics` (the request is passed on whole, so the answer is the
  leader's own), and the early-termination decision on a report of a sweep that has a rule.

Followers hold no state that matters: one that dies loses nothing, and they end when the leader
process does.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import secrets
import signal
import socket
import threading
import time
from typing import Any

import httpx
from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ktsweep.service.report_writer import record_and_answer
from ktsweep.service.sweeps import ReportIn, ReportRecorded

log = logging.getLogger(__name__)

INTERNAL_HEADER = "x-ktsweep-internal"
_LEADER_ONLY = (
    ("POST", re.compile(r"/api/v1/sweeps/?")),
    ("POST", re.compile(r"/api/v1/sweeps/[^/]+/(pause|resume|cancel)/?")),
    ("GET", re.compile(r"/(metrics|readyz)/?")),
)
# Not passed on either way: they describe one connection, not the request.
_HOP_HEADERS = {
    b"connection",
    b"keep-alive",
    b"transfer-encoding",
    b"content-length",
    b"host",
    b"upgrade",
}


def new_internal_token() -> str:
    """A token that proves a request on the leader's socket comes from a follower."""
    return secrets.token_urlsafe(24)


def is_leader_only(method: str, path: str) -> bool:
    """Whether a follower must hand this request to the leader."""
    return any(method == m and pattern.fullmatch(path) for m, pattern in _LEADER_ONLY)


class LeaderLink:
    """A follower's connection to the leader: HTTP over the leader's private Unix socket.

    Args:
        socket_path: The leader's socket.
        token: The internal token the leader was started with.
    """

    def __init__(self, socket_path: str, token: str):
        self.socket_path = socket_path
        self.token = token
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:  # made on the event loop that uses it
            self._client = httpx.AsyncClient(
                transport=httpx.AsyncHTTPTransport(uds=self.socket_path),
                base_url="http://leader",
                timeout=httpx.Timeout(120.0, connect=5.0),
                headers={INTERNAL_HEADER: self.token},
            )
        return self._client

    async def decide(self, trial_id: str) -> dict[str, Any]:
        """The leader's early-termination answer for a report already stored:
        `{"action": "continue" | "stop", "decides": bool}`."""
        response = await self.client.post(f"/internal/trials/{trial_id}/decide")
        response.raise_for_status()
        return response.json()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class FollowerScheduler:
    """What a follower has in place of the scheduler: the trial-token secret, and reports.

    A report is stored here (group commit, as on the leader); only a sweep with an
    early-termination rule asks the leader for the answer, whose search method holds the rule.
    """

    def __init__(self, secret: str, leader: LeaderLink, metrics=None):
        self.secret = secret
        self.leader = leader
        self.metrics = metrics
        self._decides_on_reports: dict[str, bool] = {}

    is_alive = True  # this process needs no scheduling thread; /readyz asks the leader

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def learn_report_rules(self) -> None:
        pass

    def sweep_submitted(self, sweep_id: str) -> None:
        raise RuntimeError("a follower process does not take sweeps; the leader does")

    async def handle_report(self, writer, report: ReportIn) -> str:
        return await record_and_answer(
            writer, report, self._decides_on_reports, self._ask_leader, self.metrics
        )

    async def _ask_leader(self, report: ReportIn, recorded: ReportRecorded) -> str:
        try:
            answer = await self.leader.decide(report.trial_id)
        except httpx.HTTPError as exc:
            # The report is stored; without the leader there is no rule to apply right now.
            log.warning("could not ask the leader about trial %s: %r", report.trial_id, exc)
            return "continue"
        self._decides_on_reports[recorded.sweep_id] = bool(answer["decides"])
        return answer["action"]


class ForwardToLeader:
    """ASGI middleware of a follower: hands the leader-only requests to the leader, whole.

    The leader answers them as if the client had asked it: same method, path, query, headers
    (the client's `Authorization` included) and body. If the leader cannot be reached the
    answer is a 503 that says so.
    """

    def __init__(self, app, leader: LeaderLink):
        self.app = app
        self.leader = leader

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not is_leader_only(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        target = scope["raw_path"].decode("latin-1") if scope.get("raw_path") else scope["path"]
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP_HEADERS]
        try:
            response = await self.leader.client.request(
                scope["method"], target, headers=headers, content=bytes(body)
            )
        except httpx.HTTPError as exc:
            detail = (
                f"the controller's scheduling process cannot be reached ({exc!r}); it may be "
                "starting or restarting: try again in a few seconds."
            )
            payload = json.dumps({"detail": detail}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [(b"content-type", b"application/json"), (b"retry-after", b"5")],
                }
            )
            await send({"type": "http.response.body", "body": payload})
            return
        out_headers = [(k, v) for k, v in response.headers.raw if k.lower() not in _HOP_HEADERS]
        await send(
            {"type": "http.response.start", "status": response.status_code, "headers": out_headers}
        )
        await send({"type": "http.response.body", "body": response.content})


def add_internal_routes(app, token: str) -> None:
    """The leader's routes for its followers; they answer 404 to anyone without `token`."""

    @app.post("/internal/trials/{trial_id}/decide", include_in_schema=False)
    async def decide(trial_id: str, request: Request):
        if not hmac.compare_digest(request.headers.get(INTERNAL_HEADER, ""), token):
            return JSONResponse(status_code=404, content={"detail": "Not Found"})
        scheduler = request.app.state.scheduler
        action, decides = await run_in_threadpool(scheduler.decide_on_report, trial_id)
        return {"action": action, "decides": decides}


def bind_tcp(host: str, port: int) -> socket.socket:
    """A listening socket on host:port that other processes of this server may share."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def check_port_free(host: str, port: int) -> None:
    """Raise OSError when something already listens on host:port.

    Sockets with SO_REUSEPORT of the same user would otherwise share the port silently, say
    with a controller still running from before."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


def bind_unix(path: str) -> socket.socket:
    """The leader's private socket (its folder is the user's alone)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    os.chmod(path, 0o600)
    sock.listen(2048)
    return sock


def run_follower(
    settings_data: dict[str, Any],
    host: str,
    port: int,
    socket_path: str,
    token: str,
    report_slots: list,
    connections: Any,
    index: int,
    parent_pid: int,
) -> None:
    """A follower process's main: serve the API on host:port until the leader's process ends.

    `connections` counts the connections each process holds
    (`ktsweep.service.balancer`); those handed to this process arrive in the folder of the
    leader's socket."""

    from ktsweep.service.app import create_app
    from ktsweep.service.balancer import ConnectionBalancer, balanced_server
    from ktsweep.service.config import Settings
    from ktsweep.service.observability import ReportCount, configure_logging

    configure_logging()
    settings = Settings(**settings_data)
    app = create_app(
        settings,
        leader=LeaderLink(socket_path, token),
        report_count=ReportCount(report_slots, index),
    )
    sock = bind_tcp(host, port)

    def watch_parent() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        log.warning("the leader process ended; this follower stops too")
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch_parent, name="ktsweep-watch-leader", daemon=True).start()
    balancer = ConnectionBalancer(connections, index, os.path.dirname(socket_path))
    server = balanced_server(app, balancer, log_level="info", access_log=settings.access_log)
    server.run(sockets=[sock])
