"""Resolving `module:function` entry points named in a sweep spec.

An entry point is a code reference from the network, so resolving one is checked twice: the
controller allows only some modules (`KTSWEEP_ALLOWED_MODULES`), and the object an entry point
resolves to must be defined in the module it names (or in one of that module's submodules).
The second check is on the object itself, not the path used to reach it, so an allowed module
cannot be used as a step towards anything it merely imports: `allowed.module:np.os.system`
resolves to `os.system`, which is defined in `posix`, and is refused.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from typing import Any


class EntryPointError(ImportError):
    """An entry point that cannot be imported or found, or that is not allowed."""


class EntryPointModuleNotFound(EntryPointError):
    """The module an entry point names cannot be imported (here: it may exist on workers)."""


def is_allowed(module: str, prefixes: Sequence[str]) -> bool:
    """Whether `module` is one of `prefixes` or inside one of them (`*` allows any)."""
    return any(
        prefix == "*" or module == prefix or module.startswith(prefix + ".") for prefix in prefixes
    )


def defining_module(target: Any) -> str | None:
    """The module an object is defined in (a class's, for an instance), or None if unknown."""
    owner = getattr(target, "__module__", None)
    if not isinstance(owner, str) and not inspect.isclass(target):
        owner = getattr(type(target), "__module__", None)
    return owner if isinstance(owner, str) else None


def resolve_entry_point(entry_point: str) -> Callable[..., Any]:
    """Import `package.module:attribute` and return the attribute.

    The attribute may be dotted (`module:Class.method`), but every step is public (no leading
    underscore) and the object it resolves to must be defined in `package.module` or a
    submodule of it.

    Raises:
        EntryPointError: with what went wrong and how to fix it.
    """
    module_name, sep, attribute = entry_point.partition(":")
    if not sep or not module_name or not attribute:
        raise EntryPointError(
            f"'{entry_point}' is not an entry point; write it as 'package.module:function'."
        )
    parts = attribute.split(".")
    if any(not part.isidentifier() or part.startswith("_") for part in parts):
        raise EntryPointError(
            f"'{entry_point}' names a private or invalid attribute; name a public function or "
            "class of the module, as 'package.module:function'."
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EntryPointModuleNotFound(
            f"cannot import module '{module_name}' of entry point '{entry_point}': {exc}. "
            "Install the package that provides it on every worker, or fix the name."
        ) from exc
    target: Any = module
    for part in parts:
        try:
            target = getattr(target, part)
        except AttributeError:
            raise EntryPointError(
                f"module '{module_name}' has no attribute '{attribute}' "
                f"(entry point '{entry_point}')."
            ) from None
    owner = defining_module(target)
    if owner is None or not is_allowed(owner, [module_name]):
        raise EntryPointError(
            f"entry point '{entry_point}' resolves to an object defined in module "
            f"'{owner or 'unknown'}', not in '{module_name}'; an entry point must name an object "
            f"defined in its own module. Name it where it is defined ('{owner}:...'), if that "
            "module is allowed."
        )
    return target
