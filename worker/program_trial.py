"""`program` trials: a W&B-sweep training script, run unchanged as it would be by `wandb agent`.

The script gets the trial's parameters the way a W&B agent passes them: on its command line
(the sweep's `command`, with W&B's macros `${env}`, `${interpreter}`, `${program}`, `${args}`,
`${args_no_hyphens}`, `${args_json}`, `${args_json_file}`, ...) and as its run's config (the
agent's `WANDB_SWEEP_PARAM_PATH` file, which `wandb.init()` reads into `wandb.config`). While it
runs, each `wandb.log` reaches the controller at once: `${interpreter}` runs the script through
`ktsweep.worker.program_launcher`, whose hook appends every logged dict to a metrics file
that the worker follows. A command that calls `python` itself gets no hook; its metrics are
then read from the run's transaction log (`run-<id>.wandb`, which W&B writes online and
offline, flushed every second here). A "stop" answer ends the script as the W&B agent ends a run
that early termination stops (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import string
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ktsweep.lifecycle import TrialState
from ktsweep.worker.compat import wandb as wandb_compat
from ktsweep.worker.environment import without_secrets
from ktsweep.worker.program_launcher import METRICS_FILE_ENV
from ktsweep.worker.reporter import Reporter, plain_metrics
from ktsweep.worker.trial_spec import TrialResult, TrialSpec

DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]
# W&B's macros that expand to the program's own arguments.
ARGUMENT_MACROS = (
    "args",
    "args_no_hyphens",
    "args_no_boolean_flags",
    "args_json",
    "args_json_file",
)
# How a command may start the program: the interpreter (a literal `python` means the
# controller's own), then the program; or the program itself.
INTERPRETER_WORDS = ("${interpreter}", "python", "python3")
_MACRO = re.compile(r"\$\{([^}]*)\}")
POLL_SECONDS = 0.5
# Seconds a stopped script has to exit after SIGTERM before it is killed.
STOP_GRACE_SECONDS = 10.0
# The digits of the run IDs `wandb.init` makes (base 36), for the ID given to the script's run.
_RUN_ID_DIGITS = string.ascii_lowercase + string.digits


def run_program_trial(spec: TrialSpec, reporter: Reporter | None = None) -> TrialResult:
    """Run `spec.program` with the trial's parameters; report its logged metrics as it goes.

    Args:
        spec: The trial; `program`, `command`, `working_dir`, `hyperparameters`, `wandb`
            (`project`, `entity`, `mode`, `dir`) are used.
        reporter: Where each logged step goes; a "stop" answer ends the script.

    Returns:
        "completed" when the script exits 0, "stopped" when a report answered "stop",
        "failed" (with the end of its output) otherwise.
    """
    working_dir = Path(spec.working_dir or os.getcwd())
    program = Path(spec.program)
    if not (working_dir / program).is_file():
        raise FileNotFoundError(
            f"program '{spec.program}' not found in {working_dir}. Give its path relative to "
            "the sweep's working directory, and make sure the script is on every worker."
        )
    settings = spec.wandb or {}
    wandb_dir = Path(settings.get("dir") or working_dir).resolve()
    run_id = _new_run_id()
    files = wandb_dir / "wandb" / f"sweep-{spec.sweep_id or 'ktsweep'}"
    files.mkdir(parents=True, exist_ok=True)
    param_path = files / f"config-{run_id}.yaml"
    args_json_path = files / f"config-{run_id}.json"
    wandb_compat.write_sweep_param_file(param_path, spec.hyperparameters)
    args_json_path.write_text(json.dumps(spec.hyperparameters))
    command = sweep_command(spec.command, spec.program, spec.hyperparameters, args_json_path)
    metrics_path = files / f"metrics-{run_id}.jsonl"
    env = {
        **without_secrets(os.environ),  # the script is trial code: no operator secrets
        METRICS_FILE_ENV: str(metrics_path),
        "WANDB__TRANSACTION_LOG_FLUSH_INTERVAL": "1",
        "WANDB_RUN_ID": run_id,
        "WANDB_SWEEP_PARAM_PATH": str(param_path),
        "WANDB_DIR": str(wandb_dir),
        "WANDB_MODE": settings.get("mode") or os.environ.get("WANDB_MODE") or "offline",
        "WANDB_PROJECT": settings.get("project") or "ktsweep",
        "WANDB_RUN_GROUP": spec.sweep_id or "",
        "WANDB_NAME": spec.trial_id,
    }
    if settings.get("entity"):
        env["WANDB_ENTITY"] = settings["entity"]
    output_path = files / f"output-{run_id}.log"
    with open(output_path, "wb") as output:
        process = subprocess.Popen(
            command, cwd=working_dir, env=env, stdout=output, stderr=subprocess.STDOUT
        )
        history, stopped = _follow(process, metrics_path, wandb_dir, run_id, reporter)
    run_dir = find_run_dir(wandb_dir, run_id)
    link = _offline_or_online_link(run_dir, env, run_id)
    result = TrialResult(
        trial_id=spec.trial_id,
        state=(TrialState.STOPPED if stopped else TrialState.COMPLETED).value,
        metrics=history[-1]["metrics"] if history else {},
        history=history,
        epochs=len(history),
        wandb=link,
    )
    if not stopped and process.returncode != 0:
        result.state = TrialState.FAILED.value
        result.error = (
            f"{' '.join(command)} exited with code {process.returncode}; its output ends:\n"
            + _tail(output_path)
        )
    return result


def _new_run_id(length: int = 8) -> str:
    """A random run ID of `length` base-36 digits, as `wandb.init` makes them."""
    return "".join(secrets.choice(_RUN_ID_DIGITS) for _ in range(length))


def command_problems(command: list[str] | None, parameter_names: set[str]) -> list[str]:
    """What is wrong with a sweep's `command` under the default rules (empty when fine).

    The rules fix the executable: after an optional `${env}`, the command is
    `${interpreter} ${program}` (or `python ${program}`) or `${program}` alone; what follows
    are the program's own arguments: W&B's argument macros, `${name}` of a parameter (also
    inside a word, as in `--batch_size=${batch_size}`), and literals.

    Args:
        command: The sweep's `command`; None for W&B's default.
        parameter_names: The names `${name}` may use (the sweep's parameters).
    """
    parts = [str(part) for part in (command or DEFAULT_COMMAND)]
    if parts[:1] == ["${env}"]:
        parts = parts[1:]
    if parts[:1] and parts[0] in INTERPRETER_WORDS and parts[1:2] == ["${program}"]:
        arguments = parts[2:]
    elif parts[:1] == ["${program}"]:
        arguments = parts[1:]
    else:
        return [
            f"the command {' '.join(parts) or '(empty)'} does not start the sweep's program: "
            "write `[${env}, ${interpreter}, ${program}, ${args}]` (W&B's default), start it "
            "with `python ${program}` or `${program}`, and put the program's own arguments "
            "after it. The operator can allow any command with KTSWEEP_ALLOW_ANY_COMMAND=1."
        ]
    problems = []
    allowed = set(ARGUMENT_MACROS) | set(parameter_names)
    for part in arguments:
        for name in _MACRO.findall(part):
            if name not in allowed:
                problems.append(
                    f"`${{{name}}}` in the command is neither one of W&B's argument macros "
                    f"({', '.join('${' + m + '}' for m in ARGUMENT_MACROS)}) nor a parameter "
                    "of the sweep; the program's arguments may only use those."
                )
    return problems


def sweep_command(
    command: list[str] | None,
    program: str,
    hyperparameters: dict[str, Any],
    args_json_file: str | os.PathLike,
) -> list[str]:
    """The command line a W&B agent would run for these parameters (its macros expanded).

    Args:
        command: The sweep's `command`; None for W&B's default
            (`${env} ${interpreter} ${program} ${args}`).
        program: The sweep's `program`.
        hyperparameters: The trial's parameters.
        args_json_file: File holding the parameters as JSON (`${args_json_file}`).
    """
    template = wandb_compat.sweep_command_template(list(command or DEFAULT_COMMAND))
    macros = wandb_compat.sweep_argument_macros(hyperparameters)
    macros.update(
        interpreter=[sys.executable, "-m", "ktsweep.worker.program_launcher"],
        program=[program],
        args_json_file=[str(args_json_file)],
        env=["/usr/bin/env"] if os.name != "nt" else [],
    )
    values = _flat_values(hyperparameters)
    expanded: list[str] = []
    for position, chunk in enumerate(map(str, template)):
        if chunk.startswith("${") and chunk.endswith("}") and chunk[2:-1] in macros:
            expanded += [str(part) for part in macros[chunk[2:-1]]]
        elif chunk in ("python", "python3") and position <= 1 and not expanded[1:]:
            expanded.append(sys.executable)  # the interpreter the controller runs on
        else:
            expanded.append(_MACRO.sub(lambda match: _macro_value(match, values, macros), chunk))
    return expanded


def _flat_values(hyperparameters: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, value in hyperparameters.items():
        if isinstance(value, dict):
            values.update(_flat_values(value, f"{prefix}{name}."))
        values[f"{prefix}{name}"] = value
    return values


def _macro_value(match: re.Match, values: dict[str, Any], macros: dict[str, Any]) -> str:
    """A `${name}` inside a word: a parameter's value (W&B's custom macros)."""
    name = match.group(1)
    if name not in values:
        raise ValueError(
            f"unknown macro ${{{name}}} in the sweep's command; W&B's macros are "
            + ", ".join("${" + macro + "}" for macro in sorted(macros))
            + ", and ${name} of a parameter."
        )
    return str(values[name])


def _follow(process, metrics_path: Path, wandb_dir: Path, run_id: str, reporter):
    """Report each newly logged step until the script exits; returns (history, stopped)."""
    history: list[dict[str, Any]] = []
    stopped = False
    log_file: Path | None = None
    while True:
        running = process.poll() is None
        if metrics_path.exists():
            rows = _read_metrics_lines(metrics_path)
        else:
            log_file = log_file or _find_log_file(wandb_dir, run_id)
            rows = read_history(log_file) if log_file else []
        for row in rows[len(history) :]:
            step = len(history) + 1
            entry = {"step": step, "metrics": row}
            history.append(entry)
            if stopped or reporter is None:
                continue
            if reporter.report(step, row) == "stop":
                stopped = True
                _stop(process)
        if not running:
            return history, stopped
        time.sleep(POLL_SECONDS)


def _read_metrics_lines(path: Path) -> list[dict[str, float | None]]:
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(plain_metrics(json.loads(line)))
        except ValueError:
            break  # a line still being written
    return rows


def _stop(process) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def find_run_dir(wandb_dir: Path, run_id: str) -> Path | None:
    """The folder of run `run_id` under `wandb_dir` (`wandb/[offline-]run-<time>-<id>`)."""
    matches = sorted((Path(wandb_dir) / "wandb").glob(f"*run-*-{run_id}"))
    return matches[-1] if matches else None


def _find_log_file(wandb_dir: Path, run_id: str) -> Path | None:
    run_dir = find_run_dir(wandb_dir, run_id)
    if run_dir is None:
        return None
    path = run_dir / f"run-{run_id}.wandb"
    return path if path.is_file() else None


def _offline_or_online_link(run_dir: Path | None, env: dict[str, str], run_id: str):
    if run_dir is None:
        return None
    link: dict[str, Any] = {
        "run_id": run_id,
        "project": env["WANDB_PROJECT"],
        "entity": env.get("WANDB_ENTITY") or None,
    }
    link["mode"] = env["WANDB_MODE"]
    if env["WANDB_MODE"] == "offline":
        link.update(run_dir=str(run_dir), sync_command=f"wandb sync {run_dir}", url=None)
    else:
        link["url"] = None  # the script's own run knows it; the log has no URL
        link["run_dir"] = str(run_dir)
    return link


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def read_history(path: str | os.PathLike) -> list[dict[str, float | None]]:
    """The metrics of each `wandb.log` step recorded so far in a run's `.wandb` file.

    A record still being written at the end of the file is left for the next read.
    """
    rows: list[dict[str, float | None]] = []
    for values in wandb_compat.logged_rows(Path(path).read_bytes()):
        metrics = plain_metrics(values)
        if metrics:
            rows.append(metrics)
    return rows
