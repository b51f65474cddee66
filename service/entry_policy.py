"""Which modules a spec may name as hypermodel, data or callback code.

The controller imports nothing a spec names, but workers do; so only modules the operator allows
(`KTSWEEP_ALLOWED_MODULES`) may be named. Default: the bundled examples and the packages in the
controller's working directory.
"""

from __future__ import annotations

from pathlib import Path

from service.config import Settings
from service.spec import SpecError, SpecProblem, SweepSpec


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
    return ["examples", *(m for m in local if m != "examples")]


def is_allowed(module: str, prefixes: list[str]) -> bool:
    return any(
        prefix == "*" or module == prefix or module.startswith(prefix + ".") for prefix in prefixes
    )


def check_entry_points(spec: SweepSpec, settings: Settings) -> None:
    """Raise `SpecError` (HTTP 422) for any entry point outside the allowed modules."""
    prefixes = allowed_modules(settings)
    named: list[tuple[str, str]] = []
    if spec.trial is not None:
        named += [("trial.hypermodel", spec.trial.hypermodel), ("trial.data", spec.trial.data)]
    eval_table = spec.callbacks.eval_table
    if isinstance(eval_table, dict):
        eval_table = eval_table.get("callback")
    if isinstance(eval_table, str):
        named.append(("callbacks.eval_table", eval_table))
    problems = []
    for path, entry_point in named:
        module = entry_point.partition(":")[0]
        if not is_allowed(module, prefixes):
            problems.append(
                SpecProblem(
                    path=path,
                    message=f"module '{module}' is not among the allowed modules "
                    f"({', '.join(prefixes)}); the operator can allow it by adding it to "
                    "KTSWEEP_ALLOWED_MODULES (comma-separated module prefixes) and restarting "
                    "the controller.",
                )
            )
    if problems:
        raise SpecError(problems)
