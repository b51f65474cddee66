"""Which code a spec may name: hypermodel, data and callback modules, and `program` scripts.

Workers import what a spec names (and the controller imports the hypermodel to discover its
search space), so only modules the operator allows (`KTSWEEP_ALLOWED_MODULES`) may be named.
Default: the bundled examples and the packages in the controller's working directory. A `program`
must lie in the controller's working directory or in `KTSWEEP_ALLOWED_PROGRAM_DIRS`.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

from sqlalchemy.engine import make_url

from ktsweep.service.config import Settings
from ktsweep.service.spec import SpecError, SpecProblem, SweepSpec, is_program_sweep
from ktsweep.worker.entry_points import is_allowed
from ktsweep.worker.program_trial import command_problems


def allowed_modules(settings: Settings, cwd: Path | None = None) -> list[str]:
    """Module prefixes that entry points may come from."""
    if settings.allowed_modules.strip():
        return [m.strip() for m in settings.allowed_modules.split(",") if m.strip()]
    cwd = cwd or Path.cwd()
    local = sorted(
        path.stem if path.is_file() else path.name
        for path in cwd.iterdir()
        if (path.is_dir() and (path / "__init__.py").is_file())
        or (path.is_file() and path.suffix == ".py")
    )
    return ["ktsweep.examples", *local]


def check_entry_points(spec: SweepSpec, settings: Settings) -> None:
    """Raise `SpecError` (HTTP 422) for any entry point outside the allowed modules."""
    prefixes = allowed_modules(settings)
    named: list[tuple[str, str]] = []
    if spec.trial is not None:
        for field in ("hypermodel", "data"):
            if getattr(spec.trial, field) is not None:
                named.append((f"trial.{field}", getattr(spec.trial, field)))
    eval_table = spec.callbacks.eval_table
    if isinstance(eval_table, dict):
        eval_table = eval_table.get("callback")
    if isinstance(eval_table, str):
        named.append(("callbacks.eval_table", eval_table))
    problems = []
    for path, entry_point in named:
        module = entry_point.partition(":")[0]
        # ktsweep's own callbacks are always there to name (ClassificationEvalCallback).
        allowed = [*prefixes, "ktsweep.callbacks"] if path.startswith("callbacks.") else prefixes
        if not is_allowed(module, allowed):
            problems.append(
                SpecProblem(
                    path=path,
                    message=f"module '{module}' is not among the allowed modules "
                    f"({', '.join(prefixes)}); the operator can allow it by adding it to "
                    "KTSWEEP_ALLOWED_MODULES (comma-separated module prefixes) and restarting "
                    "the controller.",
                )
            )
    if is_program_sweep(spec):
        problems.extend(_check_program(spec, settings))
    problems.extend(_check_callback_options(spec))
    if problems:
        raise SpecError(problems)


def _check_callback_options(spec: SweepSpec) -> list[SpecProblem]:
    """`metrics_logger` and `checkpoint` take only the arguments their callbacks document (the
    worker passes them on as keyword arguments); `filepath` is the trial's own."""
    from ktsweep.callbacks import MetricsLogger, ModelCheckpoint

    problems = []
    for name, callback, own in (
        ("metrics_logger", MetricsLogger, set()),
        ("checkpoint", ModelCheckpoint, {"filepath"}),
    ):
        options = getattr(spec.callbacks, name)
        if not isinstance(options, dict):
            continue
        documented = set(inspect.signature(callback.__init__).parameters) - {"self"} - own
        for option in sorted(set(options) - documented):
            problems.append(
                SpecProblem(
                    path=f"callbacks.{name}.{option}",
                    message=f"'{option}' is not an option of {callback.__name__}; its options "
                    f"are {', '.join(sorted(documented))}. Remove it.",
                )
            )
    return problems


def allowed_program_dirs(settings: Settings) -> list[Path]:
    dirs = [Path.cwd()]
    dirs += [Path(d.strip()) for d in settings.allowed_program_dirs.split(",") if d.strip()]
    return [d.resolve() for d in dirs]


def _check_program(spec: SweepSpec, settings: Settings) -> list[SpecProblem]:
    """The `program` lies in an allowed folder, and the `command` starts it (not another)."""
    working_dir = Path(spec.working_dir) if spec.working_dir else Path.cwd()
    program = (working_dir / spec.program).resolve()
    allowed = allowed_program_dirs(settings)
    if not any(program.is_relative_to(directory) for directory in allowed):
        return [
            SpecProblem(
                path="program",
                message=f"program '{program}' is outside the folders programs may run from "
                f"({', '.join(map(str, allowed))}); the operator can add its folder to "
                "KTSWEEP_ALLOWED_PROGRAM_DIRS (comma-separated) and restart the controller.",
            )
        ]
    if any(program == path or program.is_relative_to(path) for path in _controller_files(settings)):
        return [
            SpecProblem(
                path="program",
                message=f"program '{program}' is one of the controller's own files (its "
                "database or artifact folder); name the sweep's training script.",
            )
        ]
    if not program.is_file():
        return [
            SpecProblem(
                path="program",
                message=f"program '{program}' is not a file; give the training script's path "
                "relative to `working_dir` (default: the controller's working folder).",
            )
        ]
    if settings.allow_any_command:
        return []
    names = set((spec.parameters or {}).keys())
    problems = [
        SpecProblem(path="command", message=message)
        for message in command_problems(spec.command, names)
    ]
    start = [str(part) for part in (spec.command or [])][:2]
    runs_itself = start[:1] == ["${program}"] or start == ["${env}", "${program}"]
    if runs_itself and not os.access(program, os.X_OK):
        problems.append(
            SpecProblem(
                path="command",
                message=f"the command runs '{program}' itself, but it is not executable; "
                "make it executable (chmod +x) or start it with `${interpreter} ${program}`.",
            )
        )
    return problems


def _controller_files(settings: Settings) -> list[Path]:
    """The controller's database file (SQLite) and artifact folder, which are never programs."""
    files = [Path(settings.artifact_dir).resolve()]
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        database = Path(url.database).resolve()
        files += [
            database,
            *(database.with_name(database.name + s) for s in ("-wal", "-shm", "-journal")),
        ]
    return files
