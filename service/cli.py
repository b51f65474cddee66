"""The `ktsweep` command line: run a sweep here (`run`), serve the API (`serve`), or run the
scheduler alone (`scheduler`)."""

from __future__ import annotations

import logging
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from ktsweep.client import TERMINAL_SWEEP_STATES, ApiError, Client
from ktsweep.local_token import is_loopback, new_token, remove_token, write_token

if TYPE_CHECKING:
    from ktsweep.service.config import Settings

app = typer.Typer(
    help="Hyperparameter sweeps of Keras models on Ray, tracked in W&B.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()

STATE_STYLES = {
    "pending": "dim",
    "running": "cyan",
    "completed": "green",
    "failed": "red",
    "stopped": "yellow",
    "cancelled": "magenta",
}


@app.command()
def run(
    spec: Annotated[Path, typer.Argument(help="Sweep spec (YAML or JSON).", exists=True)],
    database_url: Annotated[
        str | None, typer.Option("--db", help="Database URL (default: KTSWEEP_DATABASE_URL).")
    ] = None,
    artifact_dir: Annotated[
        Path | None, typer.Option(help="Folder for W&B runs and checkpoints.")
    ] = None,
) -> None:
    """Run a sweep right here: a local Ray, SQLite, W&B offline; shows live progress."""
    _require_backend()
    from ktsweep.service.spec import SpecError, parse_spec

    submission = spec_for_submission(spec)
    try:
        parse_spec(submission)
    except SpecError as exc:
        _print_problems(exc.problems)
        raise typer.Exit(2) from None
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if submission.get("program"):
        # Running your own spec here: its program may come from the spec's folder.
        os.environ["KTSWEEP_ALLOWED_PROGRAM_DIRS"] = submission["working_dir"]
    server, url, settings = _start_embedded_server(database_url, artifact_dir)
    try:
        with Client(url, token=settings.tokens[0] if settings.tokens else None) as client:
            sweep = client.submit(submission)
            console.print(f"Sweep [bold]{sweep['name']}[/] ({sweep['id']}) submitted.")
            sweep = _follow(client, sweep["id"])
            _print_best(client, sweep)
    finally:
        server.should_exit = True
        remove_token(int(url.rsplit(":", 1)[1]), settings.tokens[0])
    raise typer.Exit(0 if sweep["state"] == "finished" else 1)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    scheduler: Annotated[
        bool,
        typer.Option(
            "--scheduler/--no-scheduler",
            help="Also schedule trials in this process (the default). --no-scheduler serves "
            "the API alone, against a PostgreSQL that `ktsweep scheduler` schedules from.",
        ),
    ] = True,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            help="Processes serving the API, with --no-scheduler (default KTSWEEP_API_WORKERS "
            "or 1).",
        ),
    ] = None,
    access_log: Annotated[
        bool | None,
        typer.Option(
            "--access-log/--no-access-log",
            help="Log every request (default KTSWEEP_ACCESS_LOG or on).",
        ),
    ] = None,
) -> None:
    """Serve the REST API (the controller); by default this process also schedules trials on
    Ray."""
    _require_backend()
    import uvicorn

    from ktsweep.service.app import create_app
    from ktsweep.service.compat.uvicorn import HTTP_PROTOCOL
    from ktsweep.service.leadership import require_shared_database
    from ktsweep.service.observability import configure_logging

    settings = _settings_or_exit()
    if workers is not None:
        settings.api_workers = workers
    if access_log is not None:
        settings.access_log = access_log
        os.environ["KTSWEEP_ACCESS_LOG"] = "1" if access_log else "0"  # for --workers
    if os.environ.get("KTSWEEP_API_PROCESSES"):
        console.print(
            "[yellow]KTSWEEP_API_PROCESSES is no longer read.[/] For more than one API process, "
            "run `ktsweep scheduler` and `ktsweep serve --no-scheduler --workers N` (or "
            "KTSWEEP_API_WORKERS) against PostgreSQL."
        )
    if scheduler and settings.api_workers > 1:
        if workers is not None:
            console.print(
                "[red]--workers serves the API alone:[/] add --no-scheduler, and run the "
                "scheduler as `ktsweep scheduler` (both against PostgreSQL)."
            )
            raise typer.Exit(2)
        console.print(
            "[yellow]KTSWEEP_API_WORKERS applies to `ktsweep serve --no-scheduler`;[/] this "
            "process serves the API and schedules, alone."
        )
        settings.api_workers = 1
    if not scheduler:
        try:
            require_shared_database(settings.database_url, "`ktsweep serve --no-scheduler`")
        except ValueError as exc:
            console.print(str(exc), style="red", markup=False, soft_wrap=True, highlight=False)
            raise typer.Exit(2) from None
    shared_metrics = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if shared_metrics and not Path(shared_metrics).is_dir():
        console.print(
            f"PROMETHEUS_MULTIPROC_DIR={shared_metrics} is not a folder: make it (empty), or "
            "unset it (`--workers N` then uses a temporary one).",
            style="red",
            markup=False,
            soft_wrap=True,
            highlight=False,
        )
        raise typer.Exit(2)
    if not settings.tokens and not is_loopback(host):
        console.print(
            f"[red]Refusing to listen on {host} without API tokens.[/] Anyone who can reach it "
            "could submit code to run. Set KTSWEEP_API_TOKENS (comma-separated) first, or bind "
            "127.0.0.1."
        )
        raise typer.Exit(2)
    configure_logging()
    if scheduler:
        _connect_ray(settings.ray_address)  # here: an unreachable cluster is one line, not a hang
    if settings.api_url is None:
        reachable = socket.gethostname() if host in ("0.0.0.0", "::") else host
        settings.api_url = f"http://{reachable}:{port}"
    made_up = None if settings.tokens else _make_up_token(settings, host, port)
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": "info",
        "access_log": settings.access_log,
        "http": HTTP_PROTOCOL,
        "limit_concurrency": settings.max_concurrency,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
    }
    try:
        if settings.api_workers > 1:
            # uvicorn's own process manager: each process builds the app from the environment.
            with _metrics_shared_by_processes():
                uvicorn.run(
                    "ktsweep.service.app:create_api_app",
                    factory=True,
                    workers=settings.api_workers,
                    **options,
                )
        else:
            uvicorn.run(create_app(settings, scheduler=scheduler), **options)
    finally:
        if made_up is not None:
            remove_token(port, made_up)


@app.command("scheduler")
def scheduler_command(
    api_url: Annotated[
        str | None,
        typer.Option(
            "--api-url",
            help="The API's URL that trials report to (default KTSWEEP_API_URL).",
        ),
    ] = None,
) -> None:
    """Run only the scheduler (the Ray driver), against a PostgreSQL that `ktsweep serve
    --no-scheduler` processes serve the API from. Several may run: one schedules, the others
    stand by and take over when it dies."""
    _require_backend()
    import signal

    from ktsweep.service.app import run_scheduler
    from ktsweep.service.leadership import require_shared_database
    from ktsweep.service.observability import configure_logging

    settings = _settings_or_exit()
    if api_url is not None:
        settings.api_url = api_url
    try:
        require_shared_database(settings.database_url, "`ktsweep scheduler`")
    except ValueError as exc:
        console.print(str(exc), style="red", markup=False, soft_wrap=True, highlight=False)
        raise typer.Exit(2) from None
    if not settings.api_url:
        console.print(
            "[red]Trials report to the API:[/] give its URL with --api-url or KTSWEEP_API_URL "
            "(the address of `ktsweep serve --no-scheduler`, or of its load balancer)."
        )
        raise typer.Exit(2)
    configure_logging()
    _connect_ray(settings.ray_address)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    raise typer.Exit(run_scheduler(settings, stopping))


@contextmanager
def _metrics_shared_by_processes() -> Iterator[None]:
    """Within the block, the API's processes keep their Prometheus counters in one folder
    (`PROMETHEUS_MULTIPROC_DIR`), so `/metrics` from any of them sums them all: the folder the
    user set, or a private temporary one, removed afterwards. The processes are started within
    the block (uvicorn spawns them, with this environment)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="ktsweep-metrics-") as folder:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
        try:
            yield
        finally:
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]


def _settings_or_exit() -> Settings:
    """The settings from the environment; a bad `KTSWEEP_*` value ends the command here, with a
    line naming the variable (rather than a traceback from each process)."""
    from ktsweep.service.config import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as exc:
        console.print(str(exc), style="red", markup=False, soft_wrap=True, highlight=False)
        raise typer.Exit(2) from None


def _make_up_token(settings, host: str, port: int, announce: bool = True) -> str:
    """With no KTSWEEP_API_TOKENS, a random token for this run (as Jupyter makes one): kept in a
    file only this user can read, where `ktsweep` commands and `Client` find it."""
    token = new_token()
    settings.api_tokens = token
    # The API's other processes (`--workers`) read it; trial code never does (`secrets_hidden`).
    os.environ["KTSWEEP_API_TOKENS"] = token
    path = write_token(port, token)
    if announce:
        console.print(
            f"ktsweep is serving at http://{host}:{port}/?token={token}\n"
            f"No KTSWEEP_API_TOKENS was set, so this token was made up for this run; `ktsweep` "
            f"commands on this machine read it from {path}.",
            markup=False,
            soft_wrap=True,
            highlight=False,
        )
    return token


UrlOption = Annotated[
    str | None, typer.Option("--url", help="Controller URL (default KTSWEEP_URL or :8000).")
]
TokenOption = Annotated[
    str | None, typer.Option("--token", help="API token (default KTSWEEP_TOKEN).")
]


def _connect_ray(address: str | None) -> None:
    """Start or join Ray; exit with one line when the cluster named does not answer."""
    from ktsweep.worker.ray_runner import RayUnreachableError, ensure_ray

    try:
        ensure_ray(address)
    except RayUnreachableError as exc:
        console.print(str(exc), style="red", markup=False, soft_wrap=True, highlight=False)
        raise typer.Exit(2) from None


def _require_backend() -> None:
    """Exit with one line naming the extra to install when Keras has no backend."""
    from ktsweep.backend import MissingBackendError, require_backend

    try:
        require_backend()
    except MissingBackendError as exc:
        console.print(str(exc), style="red", markup=False, soft_wrap=True, highlight=False)
        raise typer.Exit(2) from None


def _client(url: str | None, token: str | None) -> Client:
    return Client(url, token)


def _api_call(call):
    try:
        return call()
    except ApiError as exc:
        console.print(f"[red]{exc}[/]", soft_wrap=True)
        raise typer.Exit(1) from None
    except httpx.TransportError as exc:
        console.print(
            f"[red]Cannot reach the controller ({exc}).[/] Start it with `ktsweep serve`, or "
            "pass --url / set KTSWEEP_URL."
        )
        raise typer.Exit(1) from None


@app.command()
def submit(
    spec: Annotated[Path, typer.Argument(help="Sweep spec (YAML or JSON).", exists=True)],
    wait: Annotated[bool, typer.Option("--wait", help="Follow the sweep until it ends.")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Submit a sweep to a running controller."""
    submission = spec_for_submission(spec)
    with _client(url, token) as client:
        sweep = _api_call(lambda: client.submit(submission))
        console.print(f"Sweep [bold]{sweep['name']}[/] submitted: {sweep['id']}")
        if wait:
            sweep = _api_call(lambda: _follow(client, sweep["id"]))
            _print_best(client, sweep)
            raise typer.Exit(0 if sweep["state"] == "finished" else 1)


@app.command()
def status(
    sweep_id: Annotated[
        str | None, typer.Argument(help="A sweep id; all sweeps if left out.")
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """A sweep's state and trial counts, or a list of sweeps."""
    with _client(url, token) as client:
        sweeps = (
            [_api_call(lambda: client.sweep(sweep_id))] if sweep_id else _api_call(client.sweeps)
        )
    table = Table("sweep", "name", "state", "trials", "best")
    for sweep in sweeps:
        counts = sweep["trial_counts"]
        run_cap = sweep["spec"].get("run_cap") or "?"
        state_counts = ", ".join(
            f"{count} {state}" for state, count in counts.items() if count and state != "total"
        )
        best = sweep.get("best_trial")
        best_text = f"{best['objective']:.4f} ({best['id']})" if best else ""
        table.add_row(
            sweep["id"],
            sweep["name"],
            sweep["state"],
            f"{counts['total']}/{run_cap}: {state_counts}",
            best_text,
        )
    console.print(table)
    warm_start = sweeps[0].get("warm_start") if sweep_id else None
    if warm_start:  # what the prior sweeps taught the search method, and what it skipped
        console.print(
            f"warm start from {', '.join(warm_start['prior_sweeps'])}: learned "
            f"{warm_start['learned']} trials, skipped {warm_start['skipped_outside_space']} "
            f"outside the space and {warm_start['skipped_without_objective']} without the metric",
            markup=False,
            highlight=False,
        )


@app.command()
def trials(
    sweep_id: Annotated[str, typer.Argument(help="The sweep.")],
    state: Annotated[str | None, typer.Option(help="Only trials in this state.")] = None,
    by_metric: Annotated[bool, typer.Option("--by-metric", help="Best first.")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """A sweep's trials."""
    with _client(url, token) as client:
        sweep = _api_call(lambda: client.sweep(sweep_id))
        order = "metric" if by_metric else "number"
        items = _api_call(lambda: client.trials(sweep_id, state=state, order=order))
    console.print(_progress_view(sweep, items))


@app.command()
def best(
    sweep_id: Annotated[str, typer.Argument(help="The sweep.")],
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """The best trial: hyperparameters, metric, W&B run link, checkpoint."""
    with _client(url, token) as client:
        sweep = _api_call(lambda: client.sweep(sweep_id))
        _print_best(client, sweep)


def _lifecycle(action: str, sweep_id: str, url: str | None, token: str | None) -> None:
    with _client(url, token) as client:
        sweep = _api_call(lambda: getattr(client, action)(sweep_id))
    console.print(f"Sweep {sweep['id']} is now {sweep['state']}.")


@app.command()
def cancel(
    sweep_id: Annotated[str, typer.Argument(help="The sweep.")],
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Cancel a sweep: its running trials are stopped."""
    _lifecycle("cancel", sweep_id, url, token)


@app.command()
def pause(
    sweep_id: Annotated[str, typer.Argument(help="The sweep.")],
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Pause a sweep: no new trials start; running ones finish."""
    _lifecycle("pause", sweep_id, url, token)


@app.command()
def resume(
    sweep_id: Annotated[str, typer.Argument(help="The sweep.")],
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Resume a paused sweep."""
    _lifecycle("resume", sweep_id, url, token)


@app.command()
def sync(
    sweep_id: Annotated[str, typer.Argument(help="The sweep.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the commands without running them.")
    ] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Upload a sweep's offline W&B runs with `wandb sync` (needs the network and a W&B login),
    then tag the runs of its best trials: `pareto-front` (several objectives) or `best`."""
    import shlex
    import subprocess

    with _client(url, token) as client:
        items = _api_call(lambda: client.trials(sweep_id))
        best = _api_call(lambda: _best_or_none(client, sweep_id))
    offline = [t for t in items if t.get("wandb") and t["wandb"].get("sync_command")]
    if not offline:
        console.print("No offline W&B runs in this sweep; nothing to upload.")
    failures = 0
    for trial in offline:
        command = trial["wandb"]["sync_command"]
        if dry_run:
            console.print(command, soft_wrap=True, markup=False)
            continue
        if not Path(trial["wandb"]["run_dir"]).is_dir():
            console.print(f"[yellow]{trial['id']}: run folder not on this machine; skipped.[/]")
            failures += 1
            continue
        # The same `wandb sync`, by this interpreter: `wandb` need not be on PATH.
        argv = shlex.split(command)
        if argv[:2] == ["wandb", "sync"]:
            argv = [sys.executable, "-m", "wandb", *argv[1:]]
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode == 0:
            console.print(f"{trial['id']}: uploaded")
        else:
            failures += 1
            message = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["failed"]
            console.print(f"[red]{trial['id']}: wandb sync failed:[/] {message[0]}", soft_wrap=True)
    if best is not None and not dry_run and any(t.get("wandb") for t in items):
        failures += _mark_best(items, best)
    if failures:
        raise typer.Exit(1)


def _best_or_none(client, sweep_id: str) -> dict[str, Any] | None:
    """The sweep's best (`GET /sweeps/{id}/best`), or None where it has none (409)."""
    try:
        return client.best(sweep_id)
    except ApiError as exc:
        if exc.status_code == 409:  # no metric, or no finished trial yet
            return None
        raise


def _mark_best(trials: list[dict[str, Any]], best: dict[str, Any]) -> int:
    """Tag the best trials' W&B runs (`ktsweep.service.wandb_marks`); returns 1 on failure."""
    import wandb

    from ktsweep.service.wandb_marks import mark_best_runs

    try:
        marks = mark_best_runs(trials, best)
    except (wandb.errors.Error, ValueError) as exc:
        console.print(f"[red]Tagging the best runs in W&B failed:[/] {exc}", soft_wrap=True)
        return 1
    missing = f"; {len(marks.unreachable)} not in W&B" if marks.unreachable else ""
    console.print(
        f"W&B tag '{marks.tag}': added to {len(marks.tagged)} run(s), removed from "
        f"{len(marks.untagged)}{missing}"
    )
    return 0


def spec_for_submission(path: Path) -> dict[str, Any]:
    """The spec file as a dict; a `program` sweep's `working_dir` defaults to the file's folder."""
    import yaml

    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        console.print(f"[red]{path} is not valid YAML/JSON:[/] {exc}")
        raise typer.Exit(2) from None
    if not isinstance(spec, dict):
        console.print(f"[red]{path} must hold a mapping of sweep fields.[/]")
        raise typer.Exit(2)
    if spec.get("program") and not spec.get("working_dir"):
        spec["working_dir"] = str(path.resolve().parent)
    return spec


def _start_embedded_server(database_url: str | None, artifact_dir: Path | None):
    import uvicorn

    from ktsweep.service.app import create_app
    from ktsweep.service.compat.uvicorn import HTTP_PROTOCOL
    from ktsweep.service.config import Settings

    overrides: dict[str, Any] = {}
    if database_url:
        overrides["database_url"] = database_url
    if artifact_dir:
        overrides["artifact_dir"] = artifact_dir
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(api_url=url, **overrides)
    if not settings.tokens:
        _make_up_token(settings, "127.0.0.1", port, announce=False)
    console.print("Starting a local Ray and the controller...", style="dim")
    logging.getLogger("ray").setLevel(logging.ERROR)
    # Ray is started from the main thread (it installs signal handlers there).
    _connect_ray(settings.ray_address)
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        http=HTTP_PROTOCOL,
        limit_concurrency=settings.max_concurrency,
        h11_max_incomplete_event_size=settings.max_header_bytes,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="ktsweep-api", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            console.print("[red]The controller did not start; see the messages above.[/]")
            raise typer.Exit(1)
        time.sleep(0.05)
    return server, url, settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _follow(client: Client, sweep_id: str) -> dict[str, Any]:
    """Show a live table of the sweep's trials until it ends; returns the final sweep."""
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        while True:
            sweep = client.sweep(sweep_id)
            trials = client.trials(sweep_id)
            live.update(_progress_view(sweep, trials))
            if sweep["state"] in TERMINAL_SWEEP_STATES:
                break
            time.sleep(0.5)
    console.print()
    return sweep


def _progress_view(sweep: dict[str, Any], trials: list[dict[str, Any]]):
    metric = (sweep["spec"].get("metric") or {}).get("name", "")
    run_cap = sweep["spec"].get("run_cap") or "?"
    table = Table(title=f"{sweep['name']} - {sweep['state']}", title_justify="left")
    table.add_column("trial")
    table.add_column("state")
    table.add_column("hyperparameters")
    table.add_column("epochs", justify="right")
    table.add_column(metric or "metric", justify="right")
    nodes = [_node_name(trial.get("node")) for trial in trials]
    many_nodes = len(set(filter(None, nodes))) > 1  # one machine: the column says nothing
    if many_nodes:
        table.add_column("node")
    for trial, node in zip(trials, nodes, strict=True):
        value = trial["metrics"].get(metric)
        style = STATE_STYLES.get(trial["state"], "")
        cells = [
            trial["id"],
            f"[{style}]{trial['state']}[/]",
            format_hyperparameters(trial["hyperparameters"]),
            str(trial["epochs"]),
            "" if value is None else f"{value:.4f}",
        ]
        if many_nodes:
            cells.append(node)
        table.add_row(*cells)
    counts = sweep["trial_counts"]
    done = counts["total"] - counts["pending"] - counts["running"]
    summary = f"{done}/{run_cap} trials done, {counts['running']} running"
    best = sweep.get("best_trial")
    if best and best.get("objective") is not None:
        summary += f"; best {metric} {best['objective']:.4f} ({best['id']})"
    return Group(table, summary)


def _node_name(node: dict[str, Any] | None) -> str:
    node = node or {}
    return node.get("hostname") or node.get("ip") or ""


def format_hyperparameters(values: dict[str, Any], prefix: str = "") -> str:
    parts = []
    for name, value in values.items():
        if isinstance(value, dict):
            parts.append(format_hyperparameters(value, f"{prefix}{name}."))
        elif isinstance(value, float):
            parts.append(f"{prefix}{name}={value:.4g}")
        else:
            parts.append(f"{prefix}{name}={value}")
    return " ".join(parts)


def _print_best(client: Client, sweep: dict[str, Any]) -> None:
    metric = (sweep["spec"].get("metric") or {}).get("name", "metric")
    counts = sweep["trial_counts"]
    console.print(
        f"Sweep {sweep['id']} {sweep['state']}: {counts['completed']} completed, "
        f"{counts['failed']} failed, {counts['stopped']} stopped."
    )
    if not sweep["spec"].get("metric") and not sweep["spec"].get("metrics"):
        console.print(
            f"This sweep has no metric, so no trial is best: `ktsweep trials {sweep['id']}` "
            "lists its trials and what they logged.",
            soft_wrap=True,
        )
        return
    try:
        best = client.best(sweep["id"])
    except ApiError as exc:
        console.print(f"[red]No best trial:[/] {exc.detail}")
        failed = client.trials(sweep["id"], state="failed")
        if failed and failed[0].get("error"):
            console.rule(f"{failed[0]['id']} error", align="left")
            console.print(failed[0]["error"].strip()[-3000:], soft_wrap=True, markup=False)
        return
    if "front" in best:
        console.print(pareto_front_table(best), soft_wrap=True)
        return
    rows = [
        ("trial", best["id"]),
        (metric, f"{best['objective']:.4f}"),
        ("hyperparameters", format_hyperparameters(best["hyperparameters"])),
        *wandb_link_rows(best.get("wandb")),
    ]
    if best.get("checkpoint"):
        rows.append(("checkpoint", best["checkpoint"]))
    console.rule("Best trial", align="left")
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        # soft_wrap keeps paths and commands on one line, so they can be copied.
        console.print(f"[bold]{label.ljust(width)}[/]  {value}", soft_wrap=True)


def pareto_front_table(answer: dict[str, Any]) -> Table:
    """The Pareto front `GET /sweeps/{id}/best` answers, one row per trial: its id, its value
    of each objective (with the goal), its hyperparameters and its W&B run."""
    objectives = answer["objectives"]
    table = Table(
        title="Pareto front (no trial is better in every objective)", title_justify="left"
    )
    table.add_column("trial")
    for objective in objectives:
        arrow = "max" if objective["goal"] == "maximize" else "min"
        table.add_column(f"{objective['name']} ({arrow})", justify="right")
    table.add_column("hyperparameters")
    table.add_column("W&B run")
    for trial in answer["front"]:
        values = [f"{trial['objectives'][o['name']]:.6g}" for o in objectives]
        link = wandb_link_rows(trial.get("wandb"))[0][1]
        table.add_row(trial["id"], *values, format_hyperparameters(trial["hyperparameters"]), link)
    return table


def wandb_link_rows(link: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The W&B run link as (label, value) rows: the URL, or the offline folder and sync command."""
    if not link:
        return [("W&B run", "(W&B disabled)")]
    if link.get("url"):
        return [("W&B run", link["url"])]
    return [("W&B run", f"{link['run_dir']} (offline)"), ("upload with", link["sync_command"])]


def _print_problems(problems) -> None:
    console.print("[red]The sweep spec has problems:[/]")
    for problem in problems:
        console.print(f"  {problem.path or '<spec>'}: {problem.message}")


def main() -> None:  # pragma: no cover - console script entry
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    main()
