"""Scheduling overhead: ktsweep through its REST API vs Ray Tune, on the same trivial trainable.

Each trial sleeps `--epoch-s` seconds for each of `--epochs` epochs and reports after each one
(0.1 s x 5 = 0.5 s by default). Both systems run `--trials` trials, `--parallelism` at a time, on
one local Ray. The ideal makespan is trials x trial duration / parallelism; each system's
makespan divided by it is its overhead ratio (1.00 = no overhead). Both get a warm-up run first
so neither pays for starting worker processes inside the measurement.

    python bench/overhead.py                 # 200 trials, parallelism 2
    python bench/overhead.py --trials 50     # quicker
    python bench/overhead.py --only ktsweep  # one side (e.g. to compare two controllers)
    python bench/overhead.py --split         # as deployed: PostgreSQL, `ktsweep scheduler`
                                             # apart from `serve --no-scheduler --workers 2`

By default ktsweep runs embedded (`ktsweep serve`: API and scheduler in one process, SQLite).
`--split` runs it as a deployment does, in a fresh PostgreSQL database made under
`--admin-url` (dropped afterwards): one `ktsweep scheduler` process (the Ray driver) and the
API as `ktsweep serve --no-scheduler --workers 2`, which trials report to.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
from sqlalchemy import create_engine, make_url, text

REPO = Path(__file__).resolve().parents[1]


def sweep_spec(trials: int, parallelism: int, epochs: int, epoch_s: float) -> dict:
    return {
        "name": f"overhead-{trials}",
        "method": "random",
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"epoch_s": {"value": epoch_s}},
        "run_cap": trials,
        "parallelism": parallelism,
        "trial": {
            "hypermodel": "ktsweep.examples.trivial:build_model",
            "data": "ktsweep.examples.trivial:load_data",
            "fit": {"epochs": epochs},
            "resources": {"cpu": 1},
        },
        "wandb": {"mode": "disabled"},
        "callbacks": {"metrics_logger": None},
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_ktsweep(args, workdir: Path) -> tuple[float, float]:
    """Makespan of the sweep (submission to the last trial's end, from the controller's clock),
    and the median time a trial took beyond its sleeps, from its start to its end."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "KTSWEEP_DATABASE_URL": args.database_url or f"sqlite:///{workdir / 'bench.db'}",
        "KTSWEEP_ARTIFACT_DIR": str(workdir / "artifacts"),
        "RAY_num_cpus": str(args.parallelism),
        "KTSWEEP_API_TOKENS": "overhead-token",
    }
    cli = [sys.executable, "-m", "ktsweep.service.cli"]
    if args.split:
        env["KTSWEEP_API_URL"] = url  # where the scheduler's trials report
        commands = {
            "scheduler": [*cli, "scheduler"],
            "api": [*cli, "serve", "--no-scheduler", "--workers", "2", "--port", str(port)],
        }
    else:
        commands = {"server": [*cli, "serve", "--port", str(port)]}
    logs = {name: open(workdir / f"{name}.log", "wb") for name in commands}  # noqa: SIM115
    processes = {
        name: subprocess.Popen(
            command, cwd=REPO, env=env, stdout=logs[name], stderr=subprocess.STDOUT
        )
        for name, command in commands.items()
    }
    try:
        auth = {"Authorization": "Bearer overhead-token"}
        with httpx.Client(base_url=url, headers=auth, timeout=30) as http:
            deadline = time.monotonic() + 180
            while True:  # the API answers, and (split) a scheduler holds the lease
                try:
                    if http.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                ended = [name for name, process in processes.items() if process.poll() is not None]
                if time.monotonic() > deadline or ended:
                    name = (ended or list(processes))[0]
                    raise RuntimeError((workdir / f"{name}.log").read_text()[-3000:])
                time.sleep(0.2)
            warmup = sweep_spec(args.parallelism, args.parallelism, args.epochs, args.epoch_s)
            wait(http, http.post("/api/v1/sweeps", json=warmup).json()["id"])
            spec = sweep_spec(args.trials, args.parallelism, args.epochs, args.epoch_s)
            sweep = http.post("/api/v1/sweeps", json=spec).json()
            wait(http, sweep["id"])
            trials = http.get(f"/api/v1/sweeps/{sweep['id']}/trials", params={"limit": 500}).json()
            states = {t["state"] for t in trials["items"]}
            if states != {"completed"} or len(trials["items"]) != args.trials:
                raise RuntimeError(f"sweep did not complete cleanly: {states}")
            submitted = datetime.fromisoformat(sweep["created_at"])
            last_end = max(datetime.fromisoformat(t["finished_at"]) for t in trials["items"])
            spans = sorted(
                (at(t["finished_at"]) - at(t["started_at"])).total_seconds()
                - args.epochs * args.epoch_s
                for t in trials["items"]
            )
            return (last_end - submitted).total_seconds(), spans[len(spans) // 2]
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            process.wait(timeout=60)
        for log in logs.values():
            log.close()


def fresh_database(admin_url: str) -> tuple[str, str]:
    """A new, empty PostgreSQL database next to `admin_url`'s: its name and URL."""
    name = f"ktsweep_overhead_{os.urandom(4).hex()}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return name, make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, name: str) -> None:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


at = datetime.fromisoformat


def wait(http: httpx.Client, sweep_id: str) -> None:
    """Poll the sweep as `ktsweep submit --wait` and `Client.wait` do (every 0.5 s): the
    makespan comes from the controller's timestamps, so polling faster would only add load."""
    while http.get(f"/api/v1/sweeps/{sweep_id}").json()["state"] not in ("finished", "failed"):
        time.sleep(0.5)


def run_ray_tune(args, workdir: Path) -> float:
    """Makespan of `Tuner.fit()` for the same trainable and concurrency."""
    import ray
    from ray import tune

    epochs, epoch_s = args.epochs, args.epoch_s

    def trainable(config):
        for epoch in range(epochs):
            time.sleep(config["epoch_s"])
            tune.report({"loss": 1.0 / (epoch + 1)})

    ray.init(num_cpus=args.parallelism, include_dashboard=False, log_to_driver=False)

    def fit(num_samples: int) -> float:
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            param_space={"epoch_s": epoch_s},
            tune_config=tune.TuneConfig(
                num_samples=num_samples, max_concurrent_trials=args.parallelism
            ),
            run_config=tune.RunConfig(storage_path=str(workdir / "tune"), verbose=0),
        )
        start = time.perf_counter()
        results = tuner.fit()
        elapsed = time.perf_counter() - start
        if results.errors:
            raise RuntimeError(results.errors[0])
        return elapsed

    try:
        fit(args.parallelism)  # warm-up
        return fit(args.trials)
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--parallelism", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--epoch-s", type=float, default=0.1)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--only", choices=["ktsweep", "ray-tune"], default=None)
    parser.add_argument(
        "--split",
        action="store_true",
        help="run ktsweep as deployed: a scheduler process apart from 2 API processes, on "
        "PostgreSQL",
    )
    parser.add_argument(
        "--admin-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="with --split: where to make the fresh database (default: the local test server)",
    )
    args = parser.parse_args()
    database = None
    if args.split and args.database_url is None:
        database, args.database_url = fresh_database(args.admin_url)
    ideal = args.trials * args.epochs * args.epoch_s / args.parallelism
    workdir = Path(tempfile.mkdtemp(prefix="ktsweep-overhead-"))
    ktsweep = ray_tune = None
    try:
        if args.only != "ray-tune":
            ktsweep, span = run_ktsweep(args, workdir)
        if args.only != "ktsweep":
            ray_tune = run_ray_tune(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if database is not None:
            drop_database(args.admin_url, database)
    print(
        f"{args.trials} trials x {args.epochs} x {args.epoch_s} s, parallelism {args.parallelism}"
    )
    print(f"{'ideal makespan':40}{ideal:8.1f} s")
    if ktsweep is not None:
        how = "ktsweep (scheduler + 2 API processes)" if args.split else "ktsweep (REST API)"
        print(f"{how:40}{ktsweep:8.1f} s   overhead ratio {ktsweep / ideal:.3f}")
        print(f"  a trial's start to its end, beyond its sleeps: median {span * 1000:.1f} ms")
    if ray_tune is not None:
        print(f"{'Ray Tune (Tuner)':40}{ray_tune:8.1f} s   overhead ratio {ray_tune / ideal:.3f}")
    if ktsweep is not None and ray_tune is not None:
        print(f"{'ktsweep / Ray Tune':40}{ktsweep / ray_tune:.3f}")


if __name__ == "__main__":
    main()
