"""The `ktsweep` command line: run a sweep here (`run`), or serve the API (`serve`)."""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from service.client import TERMINAL_SWEEP_STATES, ApiError, Client

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
    from service.spec import SpecError, parse_spec

    try:
        parse_spec(spec.read_text())
    except SpecError as exc:
        _print_problems(exc.problems)
        raise typer.Exit(2) from None
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    server, url = _start_embedded_server(database_url, artifact_dir)
    try:
        with Client(url) as client:
            sweep = client.submit(spec)
            console.print(f"Sweep [bold]{sweep['name']}[/] ({sweep['id']}) submitted.")
            sweep = _follow(client, sweep["id"])
            _print_best(client, sweep)
    finally:
        server.should_exit = True
    raise typer.Exit(0 if sweep["state"] == "finished" else 1)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Serve the REST API (the controller), scheduling trials on Ray."""
    import uvicorn

    from service.app import create_app
    from service.config import Settings

    settings = Settings()
    if settings.api_url is None:
        reachable = socket.gethostname() if host in ("0.0.0.0", "::") else host
        settings.api_url = f"http://{reachable}:{port}"
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")


def _start_embedded_server(database_url: str | None, artifact_dir: Path | None):
    import uvicorn

    from service.app import create_app
    from service.config import Settings
    from worker.ray_runner import ensure_ray

    overrides: dict[str, Any] = {}
    if database_url:
        overrides["database_url"] = database_url
    if artifact_dir:
        overrides["artifact_dir"] = artifact_dir
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(api_url=url, **overrides)
    console.print("Starting a local Ray and the controller...", style="dim")
    logging.getLogger("ray").setLevel(logging.ERROR)
    # Ray is started from the main thread (it installs signal handlers there).
    ensure_ray(settings.ray_address)
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="ktsweep-api", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            console.print("[red]The controller did not start; see the messages above.[/]")
            raise typer.Exit(1)
        time.sleep(0.05)
    return server, url


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
    for trial in trials:
        value = trial["metrics"].get(metric)
        style = STATE_STYLES.get(trial["state"], "")
        table.add_row(
            trial["id"],
            f"[{style}]{trial['state']}[/]",
            format_hyperparameters(trial["hyperparameters"]),
            str(trial["epochs"]),
            "" if value is None else f"{value:.4f}",
        )
    counts = sweep["trial_counts"]
    done = counts["total"] - counts["pending"] - counts["running"]
    summary = f"{done}/{run_cap} trials done, {counts['running']} running"
    best = sweep.get("best_trial")
    if best and best.get("objective") is not None:
        summary += f"; best {metric} {best['objective']:.4f} ({best['id']})"
    return Group(table, summary)


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
    try:
        best = client.best(sweep["id"])
    except ApiError as exc:
        console.print(f"[red]No best trial:[/] {exc.detail}")
        failed = client.trials(sweep["id"], state="failed")
        if failed and failed[0].get("error"):
            console.rule(f"{failed[0]['id']} error", align="left")
            console.print(failed[0]["error"].strip()[-3000:], soft_wrap=True, markup=False)
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
