"""API load: 50 concurrent clients on list, detail and report endpoints against 10,000 trials.

Seeds a sweep of `--trials` running trials in a fresh PostgreSQL database (timing the per-trial
write cost from the first trial to the last), starts `ktsweep serve` on it, then runs
`--clients` concurrent clients: half their requests are worker reports
(`POST /trials/{id}/reports`), a quarter trial details, a quarter trial lists. The first
`--warmup` seconds of load (each new database server process loading its catalog and each
API process its first requests' code paths) are left out of the latencies, which are those of
the next `--duration` seconds; errors count over both. Prints latency percentiles per
endpoint (and of the warm-up), errors (by status), and reports accepted per second.

The trials' spec asks for a TPU, which this machine lacks: the controller relaunches the seeded
running trials on its local Ray at start (as after a restart), and they wait in Ray's queue as
on a cluster whose workers are elsewhere, instead of training on the cores the benchmark
measures. Each client is one keep-alive HTTP/1.1 connection written on asyncio streams: a
request costs the client a few tens of microseconds, so the clients (on the same machine)
leave the cores to the controller.

The controller runs as `ktsweep serve --processes 2 --no-access-log` (a leader that schedules
and one follower: see service/processes.py); `--processes 1` and `--access-log` measure the
other configurations.

    python bench/api_load.py                         # PostgreSQL on 127.0.0.1:5432, db "test"
    python bench/api_load.py --duration 20 --trials 2000
    python bench/api_load.py --processes 1
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
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


# The controller always needs a token (it makes one up when none is set): the clients send this.
TOKEN = "api-load-token"
AUTH = f"Authorization: Bearer {TOKEN}\r\n"


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


async def client_loop(port, sweep_id, trials, deadline, results, errors, connections, seed_value):
    """One client: one keep-alive connection, requests back to back until `deadline`."""
    rng = random.Random(seed_value)
    steps: dict[int, int] = {}
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        # Which API process holds this connection (the kernel places connections).
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        _, payload = await read_response(reader)
        pid = json.loads(payload)["pid"]
        connections[pid] += 1
        while time.monotonic() < deadline:
            number = rng.randrange(trials)
            roll = rng.random()
            if roll < 0.5:
                kind = "report"
                steps[number] = steps.get(number, 0) + 1
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
            results.append((kind, (time.perf_counter() - start) * 1000, status < 400, start, pid))
            if status >= 400:
                errors[(kind, status, payload[:200].decode(errors="replace"))] += 1
    except (OSError, asyncio.IncompleteReadError) as exc:
        errors[("connection", 0, repr(exc))] += 1
    finally:
        writer.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 response (the controller always sends Content-Length)."""
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
    if "ktsweep.service.cli serve" in command:
        return "API leader"
    if "spawn_main" in command:
        return "API follower"
    if "bench/api_load.py" in command:
        return "clients"
    if command.startswith("postgres") or "(postgres)" in stat:
        return "PostgreSQL"
    if "ray" in command:
        return "Ray"
    return "other"


def client_loop_factory():
    try:
        import uvloop
    except ImportError:  # Windows
        return None
    return uvloop.new_event_loop


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 10) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60, help="measured seconds")
    parser.add_argument(
        "--warmup",
        type=float,
        default=5,
        help="seconds of load before the measured ones, left out of the latencies (default 5)",
    )
    parser.add_argument(
        "--processes", type=int, default=2, help="`ktsweep serve --processes` (default 2)"
    )
    parser.add_argument(
        "--access-log", action="store_true", help="keep uvicorn's access log on (default off)"
    )
    parser.add_argument(
        "--latencies",
        type=Path,
        help="also write every request (kind, ms, ok, start, API process id) to this CSV file",
    )
    args = parser.parse_args()

    name = f"ktsweep_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    database_url = make_url(args.admin_url).set(database=name).render_as_string(hide_password=False)
    workdir = Path(tempfile.mkdtemp(prefix="ktsweep-api-load-"))
    server = None
    try:
        sweep_id, costs = seed(database_url, args.trials)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "KTSWEEP_DATABASE_URL": database_url,
            "KTSWEEP_ARTIFACT_DIR": str(workdir),
            "KTSWEEP_API_TOKENS": TOKEN,
        }
        server_log = workdir / "serve.log"
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ktsweep.service.cli",
                "serve",
                "--port",
                str(port),
                "--processes",
                str(args.processes),
                "--access-log" if args.access_log else "--no-access-log",
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=server_log.open("w"),
        )
        deadline = time.monotonic() + 600  # it first relaunches every running trial
        pids: set[int] = set()
        while True:  # ready, and every process answering
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    pids.add(httpx.get(f"{url}/healthz", timeout=2).json()["pid"])
                    if len(pids) >= args.processes:
                        break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError(
                    "the controller did not become ready; the end of its log:\n"
                    + server_log.read_text(errors="replace")[-3000:]
                )
            time.sleep(0.2)

        results: list[tuple[str, float, bool, float, int]] = []
        errors: collections.Counter = collections.Counter()
        connections: collections.Counter = collections.Counter()  # per API process
        end = time.monotonic() + args.warmup + args.duration

        async def run_clients():
            await asyncio.gather(
                *(
                    client_loop(
                        port, sweep_id, args.trials, end, results, errors, connections, seed_value
                    )
                    for seed_value in range(args.clients)
                )
            )

        measured_from = time.perf_counter() + args.warmup
        started = time.monotonic()
        # uvloop, as the controller uses: the clients then take less of the cores they share
        # with the controller they measure.
        cpu_at: list[dict[str, float] | None] = []
        timer = threading.Timer(args.warmup, lambda: cpu_at.append(cpu_times()))
        timer.start()
        with asyncio.Runner(loop_factory=client_loop_factory()) as runner:
            runner.run(run_clients())
        timer.cancel()
        cpu_at.append(cpu_times())
        elapsed = time.monotonic() - started - args.warmup
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
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    print(
        f"{args.trials} trials in PostgreSQL, {args.clients} clients, {elapsed:.0f} s measured "
        f"after {args.warmup:g} s of warm-up, {args.processes} API process(es), access log "
        f"{'on' if args.access_log else 'off'}"
    )
    print(
        "write cost per trial, ms, by tenth of the trials: " + " ".join(f"{c:.2f}" for c in costs)
    )
    print(
        f"  first tenth {costs[0]:.2f} ms, last tenth {costs[-1]:.2f} ms "
        f"(ratio {costs[-1] / costs[0]:.2f})"
    )
    broken = sum(count for (kind, _, _), count in errors.items() if kind == "connection")
    failed = sum(not ok for _, _, ok, _, _ in results) + broken  # warm-up included
    warmup = [ms for _, ms, _, at, _ in results if at < measured_from]
    results = [result for result in results if result[3] >= measured_from]
    if args.latencies:
        with args.latencies.open("w") as out:
            out.write("kind,ms,ok,start,pid\n")
            for kind, ms, ok, at, pid in results:
                out.write(f"{kind},{ms:.3f},{int(ok)},{at - measured_from:.4f},{pid}\n")
    if warmup:
        print(
            f"warm-up (not measured) n={len(warmup)}  p50 {percentile(warmup, 50):.1f} ms  "
            f"p99 {percentile(warmup, 99):.1f} ms"
        )
    for kind in ("report", "detail", "list"):
        latencies = [ms for k, ms, _, _, _ in results if k == kind]
        if latencies:
            print(
                f"{kind:7s} n={len(latencies):6d}  p50 {percentile(latencies, 50):7.1f} ms  "
                f"p99 {percentile(latencies, 99):7.1f} ms"
            )
    everything = [ms for _, ms, _, _, _ in results]
    reports_ok = sum(1 for k, _, ok, _, _ in results if k == "report" and ok)
    print(
        f"all     n={len(everything):6d}  p99 {percentile(everything, 99):7.1f} ms  errors {failed}"
    )
    for (kind, status, detail), count in errors.most_common():
        print(f"  {count} x {kind} {status}: {detail}")
    by_process = collections.defaultdict(list)
    for _, ms, _, _, pid in results:
        by_process[pid].append(ms)
    if len(by_process) > 1:
        print("by API process (the leader schedules too; the kernel placed the connections):")
        for pid, latencies in sorted(by_process.items(), key=lambda item: -len(item[1])):
            role = "leader  " if pid == server.pid else "follower"
            print(
                f"  {role} {connections[pid]:3d} connections  {len(latencies):6d} requests  "
                f"p50 {percentile(latencies, 50):5.1f} ms  p99 {percentile(latencies, 99):5.1f} ms"
            )
    print(f"reports accepted per second: {reports_ok / elapsed:.0f}")
    if len(cpu_at) == 2 and None not in cpu_at:
        before, after = cpu_at
        seconds = os.cpu_count() * elapsed
        shares = {kind: (after[kind] - before.get(kind, 0)) / seconds for kind in after}
        print(
            f"CPU while measured, share of the machine's {os.cpu_count()} cores: "
            + ", ".join(
                f"{kind} {share:.0%}"
                for kind, share in sorted(shares.items(), key=lambda item: -item[1])
                if share >= 0.005
            )
        )
    for trial_id, state, error in left:
        reason = (error or "").strip()[-600:]
        print(f"  trial {trial_id} left `running` (or `pending`): {state}: {reason}")


if __name__ == "__main__":
    main()
