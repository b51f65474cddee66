"""Which code a spec may name: hypermodel, data and callback modules, and `program` scripts.

Workers import what a spec names (and the controller imports the hypermodel to discover its
search space), so only modules the operator allows (`KTSWEEP_ALLOWED_MODULES`) may be named.
Default: the bundled examples and the packages in the controller's working directory. A `program`
must lie in the controller's working directory or in `KTSWEEP_ALLOWED_PROGRAM_DIRS`.
"""

from __future__ import annotations

from pathlib import Path

from ktsweep.service.config import Settings
from ktsweep.service.spec import SpecError, SpecProblem, SweepSpec, is_program_sweep
from ktsweep.worker.entry_points import is_allowed


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
    if problems:
        raise SpecError(problems)


def allowed_program_dirs(settings: Settings) -> list[Path]:
    dirs = [Path.cwd()]
    dirs += [Path(d.strip()) for d in settings.allowed_program_dirs.split(",") if d.strip()]
    return [d.resolve() for d in dirs]


def _check_program(spec: SweepSpec, settings: Settings) -> list[SpecProblem]:
    working_dir = Path(spec.working_dir) if spec.working_dir else Path.cwd()
    program = (working_dir / spec.program).resolve()
    allowed = allowed_program_dirs(settings)
    if any(program.is_relative_to(directory) for directory in allowed):
        return []
    return [
        SpecProblem(
            path="program",
            message=f"program '{program}' is outside the folders programs may run from "
            f"({', '.join(map(str, allowed))}); the operator can add its folder to "
            "KTSWEEP_ALLOWED_PROGRAM_DIRS (comma-separated) and restart the controller.",
        )
    ]
