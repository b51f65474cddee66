"""API load: 50 concurrent clients on list, detail and report endpoints against 10,000 trials.

Seeds a sweep of `--trials` running trials in a fresh PostgreSQL database (timing the per-trial
write cost from the first trial to the last), starts `ktsweep serve` on it, then runs
`--clients` concurrent clients for `--duration` seconds: half their requests are worker reports
(`POST /trials/{id}/reports`), a quarter trial details, a quarter trial lists. Prints latency
percentiles per endpoint, errors, and reports accepted per second.

    python bench/api_load.py                         # PostgreSQL on 127.0.0.1:5432, db "test"
    python bench/api_load.py --duration 20 --trials 2000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from service.db import make_engine, make_sessions, migrate
from service.models import Sweep, Trial

REPO = Path(__file__).resolve().parents[1]
SPEC = {
    "name": "api-load",
    "method": "random",
    "metric": {"name": "val_accuracy", "goal": "maximize"},
    "parameters": {"units": {"values": [16, 32]}},
    "trial": {"hypermodel": "examples.digits:build_model", "data": "examples.digits:load_data"},
}


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


async def client_loop(url, sweep_id, trials, deadline, results, seed_value):
    rng = random.Random(seed_value)
    steps: dict[int, int] = {}
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        while time.monotonic() < deadline:
            number = rng.randrange(trials)
            roll = rng.random()
            if roll < 0.5:
                kind = "report"
                steps[number] = steps.get(number, 0) + 1
                request = http.post(
                    f"/api/v1/trials/{sweep_id}-{number}/reports",
                    json={"step": steps[number], "metrics": {"val_accuracy": rng.random()}},
                )
            elif roll < 0.75:
                kind = "detail"
                request = http.get(f"/api/v1/trials/{sweep_id}-{number}")
            else:
                kind = "list"
                request = http.get(f"/api/v1/sweeps/{sweep_id}/trials", params={"limit": 50})
            start = time.perf_counter()
            try:
                response = await request
                ok = response.status_code < 400
            except httpx.HTTPError:
                ok = False
            results.append((kind, (time.perf_counter() - start) * 1000, ok))


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 10) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60)
    args = parser.parse_args()

    name = f"ktsweep_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    database_url = args.admin_url.rsplit("/", 1)[0] + f"/{name}"
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
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the controller did not become ready")
            time.sleep(0.2)

        results: list[tuple[str, float, bool]] = []
        end = time.monotonic() + args.duration

        async def run_clients():
            await asyncio.gather(
                *(
                    client_loop(url, sweep_id, args.trials, end, results, seed_value)
                    for seed_value in range(args.clients)
                )
            )

        started = time.monotonic()
        asyncio.run(run_clients())
        elapsed = time.monotonic() - started
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    print(f"{args.trials} trials in PostgreSQL, {args.clients} clients, {elapsed:.0f} s")
    print(
        "write cost per trial, ms, by tenth of the trials: " + " ".join(f"{c:.2f}" for c in costs)
    )
    print(
        f"  first tenth {costs[0]:.2f} ms, last tenth {costs[-1]:.2f} ms "
        f"(ratio {costs[-1] / costs[0]:.2f})"
    )
    errors = sum(not ok for _, _, ok in results)
    for kind in ("report", "detail", "list"):
        latencies = [ms for k, ms, _ in results if k == kind]
        if latencies:
            print(
                f"{kind:7s} n={len(latencies):6d}  p50 {percentile(latencies, 50):7.1f} ms  "
                f"p99 {percentile(latencies, 99):7.1f} ms"
            )
    everything = [ms for _, ms, _ in results]
    reports_ok = sum(1 for k, _, ok in results if k == "report" and ok)
    print(
        f"all     n={len(everything):6d}  p99 {percentile(everything, 99):7.1f} ms  errors {errors}"
    )
    print(f"reports accepted per second: {reports_ok / elapsed:.0f}")


if __name__ == "__main__":
    main()
