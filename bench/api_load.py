"""API load: 50 concurrent clients on list, detail and report endpoints against 10,000 trials,
and ktsweep's reports beside a minimal app's that does only the upsert.

Seeds a sweep of `--trials` running trials in a fresh PostgreSQL database (timing the per-trial
write cost from the first trial to the last), then starts the controller as a deployment runs
it: one `ktsweep scheduler` process (the Ray driver) and, separately, the API as
`ktsweep serve --no-scheduler --workers 2` (2 processes that share nothing but the database).
Then, one phase after another, `--clients` concurrent clients send requests back to back:

1. ktsweep, mixed: half their requests are worker reports (`POST /trials/{id}/reports`), a
   quarter trial details, a quarter trial lists (the targets: 1,000 reports/s, p99 under 50 ms,
   no errors);
2. ktsweep, reports only;
3. the minimal app (`bench/minimal_report_app.py`), reports only: one FastAPI route that upserts
   the report's row into the same `trial_reports` table through the same driver (psycopg), served
   by stock uvicorn with as many processes, against the same PostgreSQL, while the same scheduler
   runs.

Phases 2 and 3 repeat `--rounds` times, alternately. Absolute rates differ by 2x between
machines of the same kind, so the benchmark prints ktsweep / minimal for reports/s and for the
reports' p99 (goals: at least 0.6 and at most 1.5). Each phase's first `--warmup` seconds are
left out of the latencies, which are those of the next `--duration` seconds; errors count over
both. Each phase writes reports at steps of its own, so every report is a new row on both sides.

The trials' spec asks for a TPU, which this machine lacks: the scheduler relaunches the seeded
running trials on its local Ray at start (as after a restart), and they wait in Ray's queue as
on a cluster whose workers are elsewhere, instead of training on the cores the benchmark
measures; the load starts once the scheduler is idle again. Each client is one keep-alive
HTTP/1.1 connection written on asyncio streams: a request costs the client a few tens of
microseconds, so the clients (on the same machine) leave the cores to the servers.

    python bench/api_load.py                         # PostgreSQL on 127.0.0.1:5432, db "test"
    python bench/api_load.py --duration 20 --trials 2000
    python bench/api_load.py --quick                 # a smoke run: small, a few seconds a phase
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import create_engine, make_url, text

from ktsweep.service.db import make_engine, make_sessions, migrate
from ktsweep.service.models import Sweep, Trial

REPO = Path(__file__).resolve().parents[1]
SPEC = {
    "name": "api-load",
    "method": "random",
    "metric": {"name": "val_accuracy", "goal": "maximize"},
    "parameters": {"units": {"values": [16, 32]}},
    "trial": {
        "hypermodel": "ktsweep.examples.digits:build_model",
        "data": "ktsweep.examples.digits:load_data",
        "resources": {"cpu": 1, "tpu": 1},  # never runs here: see the module docstring
    },
}


# The API needs a token on every request (it makes one up when none is set): the clients send
# this one, to ktsweep and to the minimal app alike.
TOKEN = "api-load-token"
AUTH = f"Authorization: Bearer {TOKEN}\r\n"
# Each phase reports at steps from its own base up, so no phase updates another's rows.
STEP_BASE = 1_000_000


def seed(database_url: str, trials: int) -> tuple[str, list[float]]:
    """A paused sweep with `trials` running trials; returns its id and ms/trial per 10% batch."""
    engine = make_engine(database_url)
    migrate(engine)
    sessions = make_sessions(engine)
    sweep_id = uuid.uuid4().hex[:12]
    batch = max(1, trials // 10)
    costs = []
    with sessions() as session:
        session.add(Sweep(id=sweep_id, name="api-load", state="paused", spec=SPEC))
        session.commit()
        start = time.perf_counter()
        for number in range(trials):
            # One commit per trial, as the scheduler creates them.
            session.add(
                Trial(
                    id=f"{sweep_id}-{number}",
                    sweep_id=sweep_id,
                    number=number,
                    state="running",
                    hyperparameters={"units": 16},
                    metrics={},
                    attempts=1,
                )
            )
            session.commit()
            if (number + 1) % batch == 0:
                costs.append((time.perf_counter() - start) * 1000 / batch)
                start = time.perf_counter()
    engine.dispose()
    return sweep_id, costs


@dataclass
class Phase:
    """One load phase: who served it, what the clients sent, and what came back."""

    name: str
    server: str  # "ktsweep" or "minimal"
    mixed: bool  # reports, details and lists; else reports only
    step_base: int
    results: list[tuple[str, float, bool, float, int]] = field(default_factory=list)
    errors: collections.Counter = field(default_factory=collections.Counter)
    connections: collections.Counter = field(default_factory=collections.Counter)
    warmup: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    cpu: dict[str, float] | None = None
    first_report_s: float | None = None  # ktsweep: one report through each fresh process

    def latencies(self, kind: str | None = None) -> list[float]:
        return [ms for k, ms, _, _, _ in self.results if kind is None or k == kind]

    @property
    def failed(self) -> int:
        """Requests answered 4xx/5xx and connections broken, warm-up included."""
        return sum(self.errors.values())

    @property
    def reports_per_s(self) -> float:
        accepted = sum(1 for k, _, ok, _, _ in self.results if k == "report" and ok)
        return accepted / self.elapsed

    @property
    def report_p99(self) -> float:
        return percentile(self.latencies("report"), 99)


async def client_loop(port, sweep_id, trials, deadline, phase: Phase, seed_value, probe_pid):
    """One client: one keep-alive connection, requests back to back until `deadline`."""
    rng = random.Random(seed_value)
    steps: dict[int, int] = {}
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    pid = 0
    try:
        if probe_pid:
            # Which API process holds this connection (the kernel places connections).
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            _, payload = await read_response(reader)
            pid = json.loads(payload)["pid"]
        phase.connections[pid] += 1
        while time.monotonic() < deadline:
            number = rng.randrange(trials)
            roll = rng.random() if phase.mixed else 0.0
            if roll < 0.5:
                kind = "report"
                steps[number] = steps.get(number, phase.step_base) + 1
                body = json.dumps(
                    {"step": steps[number], "metrics": {"val_accuracy": rng.random()}}
                ).encode()
                request = (
                    f"POST /api/v1/trials/{sweep_id}-{number}/reports HTTP/1.1\r\n"
                    "Host: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    + AUTH
                    + f"Content-Length: {len(body)}\r\n\r\n"
                ).encode() + body
            elif roll < 0.75:
                kind = "detail"
                request = (
                    f"GET /api/v1/trials/{sweep_id}-{number} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    + AUTH
                    + "\r\n"
                ).encode()
            else:
                kind = "list"
                request = (
                    f"GET /api/v1/sweeps/{sweep_id}/trials?limit=50 HTTP/1.1\r\n"
                    "Host: 127.0.0.1\r\n" + AUTH + "\r\n"
                ).encode()
            start = time.perf_counter()
            writer.write(request)
            status, payload = await read_response(reader)
            phase.results.append(
                (kind, (time.perf_counter() - start) * 1000, status < 400, start, pid)
            )
            if status >= 400:
                phase.errors[(kind, status, payload[:200].decode(errors="replace"))] += 1
    except (OSError, asyncio.IncompleteReadError) as exc:
        phase.errors[("connection", 0, repr(exc))] += 1
    finally:
        writer.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 response (both servers send Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


def cpu_times() -> dict[str, float] | None:
    """CPU seconds used so far, by kind of process on this machine (Linux's /proc), or None."""
    if not Path("/proc/stat").exists():
        return None
    tick = os.sysconf("SC_CLK_TCK")
    used: collections.Counter = collections.Counter()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        used[process_kind(command, stat)] += (int(fields[11]) + int(fields[12])) / tick
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    used["(idle)"] = (fields[3] + fields[4]) / tick
    used["(interrupts)"] = (fields[5] + fields[6]) / tick  # not counted in any process
    return used


def process_kind(command: str, stat: str) -> str:
    if "ktsweep.service.cli scheduler" in command:
        return "scheduler"
    # The API's processes, ktsweep's or the minimal app's (only one side runs at a time):
    # uvicorn's supervisor and its workers (multiprocessing's spawned children).
    if "ktsweep.service.cli serve" in command or "minimal_report_app" in command:
        return "API"
    if "spawn_main" in command:
        return "API"
    if "bench/api_load.py" in command:
        return "clients"
    if command.startswith("postgres") or "(postgres)" in stat:
        return "PostgreSQL"
    if "ray" in command:
        return "Ray"
    return "other"


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds used so far by process `root` and its descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    parents, used = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
        used[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        grew, tree = bool(more), tree | more
    return sum(used.get(pid, 0.0) for pid in tree)


def wait_until_idle(process: subprocess.Popen, log: Path, timeout: float = 900) -> None:
    """Wait until `process` and its children use under a fifth of a core over 3 s (the
    scheduler has relaunched the seeded trials), or raise with the end of its log."""
    deadline = time.monotonic() + timeout
    before = tree_cpu_seconds(process.pid)
    while time.monotonic() < deadline:
        time.sleep(3)
        if process.poll() is not None:
            break
        after = tree_cpu_seconds(process.pid)
        if after - before < 0.6:
            return
        before = after
    raise RuntimeError(
        "the scheduler did not settle; the end of its log:\n"
        + log.read_text(errors="replace")[-8000:]
    )


def client_loop_factory():
    try:
        import uvloop
    except ImportError:  # Windows
        return None
    return uvloop.new_event_loop


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=1000)[int(q * 10) - 1] if len(values) > 1 else values[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log.open("w")
    )


def stop(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for(ready, process: subprocess.Popen, log: Path, what: str, timeout: float = 600):
    """Poll `ready()` until it is true; raise with the end of the log if `process` exits."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready():
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError(
                f"{what} did not become ready; the end of its log:\n"
                + log.read_text(errors="replace")[-8000:]
            )
        time.sleep(0.2)


def run_phase(phase: Phase, port: int, sweep_id: str, args, probe_pid: bool) -> None:
    """`args.clients` clients against `port` for `args.warmup + args.duration` seconds."""
    end = time.monotonic() + args.warmup + args.duration

    async def run_clients():
        await asyncio.gather(
            *(
                client_loop(port, sweep_id, args.trials, end, phase, seed_value, probe_pid)
                for seed_value in range(args.clients)
            )
        )

    measured_from = time.perf_counter() + args.warmup
    started = time.monotonic()
    cpu_at: list[dict[str, float] | None] = []
    timer = threading.Timer(args.warmup, lambda: cpu_at.append(cpu_times()))
    timer.start()
    # uvloop, as the servers use: the clients then take less of the cores they share with the
    # servers they measure.
    with asyncio.Runner(loop_factory=client_loop_factory()) as runner:
        runner.run(run_clients())
    timer.cancel()
    cpu_at.append(cpu_times())
    phase.elapsed = time.monotonic() - started - args.warmup
    phase.warmup = [ms for _, ms, _, at, _ in phase.results if at < measured_from]
    if args.latencies:
        with args.latencies.open("a") as out:
            for kind, ms, ok, at, pid in phase.results:
                if at >= measured_from:
                    out.write(
                        f"{phase.name},{kind},{ms:.3f},{int(ok)},{at - measured_from:.4f},{pid}\n"
                    )
    phase.results = [result for result in phase.results if result[3] >= measured_from]
    if len(cpu_at) == 2 and None not in cpu_at:
        before, after = cpu_at
        seconds = os.cpu_count() * phase.elapsed
        phase.cpu = {kind: (after[kind] - before.get(kind, 0)) / seconds for kind in after}


async def first_report_in_each_process(port: int, sweep_id: str, processes: int) -> None:
    """Send one report (step 0 of the sweep's first trial) through each of the `processes` API
    processes, each on a connection that process holds, and wait for the answers."""
    answered: set[int] = set()
    while len(answered) < processes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            _, payload = await read_response(reader)
            pid = json.loads(payload)["pid"]
            if pid in answered:
                continue
            body = json.dumps({"step": 0, "metrics": {"val_accuracy": 0.0}}).encode()
            writer.write(
                (
                    f"POST /api/v1/trials/{sweep_id}-0/reports HTTP/1.1\r\n"
                    "Host: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    + AUTH
                    + f"Content-Length: {len(body)}\r\n\r\n"
                ).encode()
                + body
            )
            status, payload = await read_response(reader)
            if status != 200:
                raise RuntimeError(f"ktsweep answered a report with {status}: {payload[:300]!r}")
            answered.add(pid)
        finally:
            writer.close()


class Ktsweep:
    """The API as `ktsweep serve --no-scheduler --workers N`, on a port of its own."""

    def __init__(self, port: int, env: dict[str, str], sweep_id: str, args, workdir: Path):
        self.port, self.env, self.args, self.workdir = port, env, args, workdir
        self.sweep_id = sweep_id
        self.process: subprocess.Popen | None = None
        self.first_report_s = 0.0

    def __enter__(self) -> Ktsweep:
        url = f"http://127.0.0.1:{self.port}"
        log = self.workdir / "serve.log"
        self.process = start(
            [
                sys.executable,
                "-m",
                "ktsweep.service.cli",
                "serve",
                "--no-scheduler",
                "--port",
                str(self.port),
                "--workers",
                str(self.args.workers),
                "--access-log" if self.args.access_log else "--no-access-log",
            ],
            self.env,
            log,
        )
        pids: set[int] = set()

        def ready() -> bool:  # ready (a scheduler is active), and every process answering
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                pids.add(httpx.get(f"{url}/healthz", timeout=2).json()["pid"])
            return len(pids) >= self.args.workers

        wait_for(ready, self.process, log, "ktsweep's API")
        # Each API process learns a sweep's report rule on its first report of that sweep
        # (it builds the sweep's search method): done here, once per process, and timed.
        started = time.monotonic()
        asyncio.run(first_report_in_each_process(self.port, self.sweep_id, self.args.workers))
        self.first_report_s = time.monotonic() - started
        return self

    def __exit__(self, *exc) -> None:
        stop(self.process)


class Minimal:
    """bench/minimal_report_app.py under stock uvicorn with N workers, on a port of its own."""

    def __init__(self, port: int, database_url: str, sweep_id: str, args, workdir: Path):
        self.port, self.args, self.workdir, self.sweep_id = port, args, workdir, sweep_id
        libpq = make_url(database_url).set(drivername="postgresql")
        self.env = {
            **os.environ,
            "MINIMAL_DATABASE_URL": libpq.render_as_string(hide_password=False),
            "MINIMAL_TOKEN": TOKEN,
            "MINIMAL_POOL_SIZE": str(args.minimal_pool),
        }
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Minimal:
        log = self.workdir / "minimal.log"
        self.process = start(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "minimal_report_app:app",
                "--app-dir",
                str(REPO / "bench"),
                "--port",
                str(self.port),
                "--workers",
                str(self.args.workers),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            self.env,
            log,
        )
        url = f"http://127.0.0.1:{self.port}/api/v1/trials/{self.sweep_id}-0/reports"
        accepted = 0

        def ready() -> bool:  # a report accepted on as many new connections as processes, twice
            nonlocal accepted
            answer = httpx.post(
                url,
                json={"step": 0, "metrics": {"val_accuracy": 0.0}},
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=2,
            )
            if answer.status_code != 200:
                raise RuntimeError(f"the minimal app answered {answer.status_code}: {answer.text}")
            accepted += 1
            return accepted >= 2 * self.args.workers

        wait_for(ready, self.process, log, "the minimal app")
        return self

    def __exit__(self, *exc) -> None:
        stop(self.process)


def print_phase(phase: Phase) -> None:
    what = "mixed (half reports, a quarter details, a quarter lists)" if phase.mixed else "reports"
    print(f"== {phase.name}: {phase.server}, {what}")
    if phase.first_report_s is not None:
        print(
            f"  before the load: the first report through each fresh API process took "
            f"{phase.first_report_s:.1f} s in all (the process learns the sweep's report rule)"
        )
    if phase.warmup:
        print(
            f"  warm-up (not measured) n={len(phase.warmup)}  "
            f"p50 {percentile(phase.warmup, 50):.1f} ms  p99 {percentile(phase.warmup, 99):.1f} ms"
        )
    for kind in ("report", "detail", "list"):
        latencies = phase.latencies(kind)
        if latencies:
            print(
                f"  {kind:7s} n={len(latencies):6d}  p50 {percentile(latencies, 50):7.1f} ms  "
                f"p99 {percentile(latencies, 99):7.1f} ms"
            )
    everything = phase.latencies()
    print(
        f"  all     n={len(everything):6d}  p99 {percentile(everything, 99):7.1f} ms  "
        f"errors {phase.failed}"
    )
    for (kind, status, detail), count in phase.errors.most_common():
        print(f"    {count} x {kind} {status}: {detail}")
    by_process = collections.defaultdict(list)
    for _, ms, _, _, pid in phase.results:
        by_process[pid].append(ms)
    if len(by_process) > 1:
        print("  by API process (the kernel placed the connections):")
        for pid, latencies in sorted(by_process.items(), key=lambda item: -len(item[1])):
            print(
                f"    pid {pid}: {phase.connections[pid]:3d} connections  "
                f"{len(latencies):6d} requests  p50 {percentile(latencies, 50):5.1f} ms  "
                f"p99 {percentile(latencies, 99):5.1f} ms"
            )
    print(f"  reports accepted per second: {phase.reports_per_s:.0f}")
    if phase.cpu:
        print(
            f"  CPU while measured, share of the machine's {os.cpu_count()} cores: "
            + ", ".join(
                f"{kind} {share:.0%}"
                for kind, share in sorted(phase.cpu.items(), key=lambda item: -item[1])
                if share >= 0.005
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument(
        "--duration", type=float, default=60, help="measured seconds per phase (default 60)"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=5,
        help="seconds of load before each phase's measured ones, left out of the latencies "
        "(default 5)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="times the reports-only phases run, ktsweep and the minimal app alternately "
        "(default 1)",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="API processes, on each side (default 2)"
    )
    parser.add_argument(
        "--minimal-pool",
        type=int,
        default=10,
        help="PostgreSQL connections per process of the minimal app (default 10)",
    )
    parser.add_argument(
        "--access-log", action="store_true", help="keep ktsweep's access log on (default off)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 1,000 trials, 3 s of warm-up and 5 s measured per phase",
    )
    parser.add_argument(
        "--latencies",
        type=Path,
        help="also write every measured request (phase, kind, ms, ok, start, API process id) "
        "to this CSV file",
    )
    args = parser.parse_args()
    if args.quick:
        args.trials, args.warmup, args.duration = min(args.trials, 1000), 3, 5
    if args.latencies:
        args.latencies.write_text("phase,kind,ms,ok,start,pid\n")

    name = f"ktsweep_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    database_url = make_url(args.admin_url).set(database=name).render_as_string(hide_password=False)
    workdir = Path(tempfile.mkdtemp(prefix="ktsweep-api-load-"))
    scheduler = None
    phases: list[Phase] = []
    try:
        sweep_id, costs = seed(database_url, args.trials)
        api_port, minimal_port = free_port(), free_port()
        env = {
            **os.environ,
            "KTSWEEP_DATABASE_URL": database_url,
            "KTSWEEP_ARTIFACT_DIR": str(workdir),
            "KTSWEEP_API_TOKENS": TOKEN,
            "KTSWEEP_API_URL": f"http://127.0.0.1:{api_port}",
        }
        env.pop("KTSWEEP_API_WORKERS", None)
        # The scheduler: a process of its own, the Ray driver (a local Ray). It relaunches the
        # seeded trials, which wait in Ray's queue; the load starts once it is idle again.
        scheduler_log = workdir / "scheduler.log"
        scheduler = start(
            [sys.executable, "-m", "ktsweep.service.cli", "scheduler"], env, scheduler_log
        )
        with Ktsweep(api_port, env, sweep_id, args, workdir) as api:
            wait_until_idle(scheduler, scheduler_log)
            phase = Phase("1", "ktsweep", mixed=True, step_base=0)
            phase.first_report_s = api.first_report_s
            run_phase(phase, api_port, sweep_id, args, probe_pid=True)
            phases.append(phase)
        for _ in range(args.rounds):
            for server in ("ktsweep", "minimal"):
                number = len(phases) + 1
                phase = Phase(str(number), server, mixed=False, step_base=number * STEP_BASE)
                if server == "ktsweep":
                    with Ktsweep(api_port, env, sweep_id, args, workdir) as api:
                        phase.first_report_s = api.first_report_s
                        run_phase(phase, api_port, sweep_id, args, probe_pid=True)
                else:
                    with Minimal(minimal_port, database_url, sweep_id, args, workdir):
                        run_phase(phase, minimal_port, sweep_id, args, probe_pid=False)
                phases.append(phase)
        # The seeded trials wait in Ray's queue the whole time (those beyond the sweep's
        # parallelism as `pending`, in its lanes, which still take reports): any that left
        # `running` or `pending` did so for a reason the benchmark should show (its reports
        # then fail with a 409).
        check = create_engine(database_url)
        with check.connect() as connection:
            left = connection.execute(
                text(
                    "SELECT id, state, error FROM trials "
                    "WHERE state NOT IN ('running', 'pending') "
                    "ORDER BY id LIMIT 5"
                )
            ).all()
        check.dispose()  # before the database is dropped
    finally:
        stop(scheduler)
        shutil.rmtree(workdir, ignore_errors=True)
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    print(
        f"{args.trials} trials in PostgreSQL, {args.clients} clients, {args.workers} API "
        f"processes on each side, {args.duration:g} s measured per phase after {args.warmup:g} s "
        f"of warm-up; one `ktsweep scheduler` process throughout; ktsweep's access log "
        f"{'on' if args.access_log else 'off'}"
    )
    print(
        "write cost per trial, ms, by tenth of the trials: " + " ".join(f"{c:.2f}" for c in costs)
    )
    print(
        f"  first tenth {costs[0]:.2f} ms, last tenth {costs[-1]:.2f} ms "
        f"(ratio {costs[-1] / costs[0]:.2f})"
    )
    for phase in phases:
        print_phase(phase)
    for trial_id, state, error in left:
        reason = (error or "").strip()[-600:]
        print(f"  trial {trial_id} left `running` (or `pending`): {state}: {reason}")

    ours = [phase for phase in phases if phase.server == "ktsweep" and not phase.mixed]
    minimal = [phase for phase in phases if phase.server == "minimal"]
    print("ktsweep / minimal app, reports only (goals: reports/s >= 0.6, p99 <= 1.5):")
    for number, (a, b) in enumerate(zip(ours, minimal, strict=True), start=1):
        print(
            f"  round {number}: reports/s {a.reports_per_s:.0f} / {b.reports_per_s:.0f} = "
            f"{a.reports_per_s / b.reports_per_s:.2f};  "
            f"p99 {a.report_p99:.1f} / {b.report_p99:.1f} ms = {a.report_p99 / b.report_p99:.2f}"
        )
    if len(ours) > 1:
        rates = [a.reports_per_s / b.reports_per_s for a, b in zip(ours, minimal, strict=True)]
        tails = [a.report_p99 / b.report_p99 for a, b in zip(ours, minimal, strict=True)]
        print(
            f"  median over {len(ours)} rounds: reports/s {statistics.median(rates):.2f}, "
            f"p99 {statistics.median(tails):.2f}"
        )
    mixed = phases[0]
    print(
        f"ktsweep, mixed load (goals: >= 1,000 reports/s, p99 < 50 ms, 0 errors): "
        f"{mixed.reports_per_s:.0f} reports/s, p99 {percentile(mixed.latencies(), 99):.1f} ms, "
        f"{mixed.failed} errors"
    )


if __name__ == "__main__":
    main()
