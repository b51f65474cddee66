"""Resolving `module:function` entry points named in a sweep spec."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


class EntryPointError(ImportError):
    """An entry point that cannot be imported or found."""


def resolve_entry_point(entry_point: str) -> Callable[..., Any]:
    """Import `package.module:attribute` and return the attribute.

    Raises:
        EntryPointError: with what went wrong and how to fix it.
    """
    module_name, sep, attribute = entry_point.partition(":")
    if not sep or not module_name or not attribute:
        raise EntryPointError(
            f"'{entry_point}' is not an entry point; write it as 'package.module:function'."
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EntryPointError(
            f"cannot import module '{module_name}' of entry point '{entry_point}': {exc}. "
            "Install the package that provides it on every worker, or fix the name."
        ) from exc
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise EntryPointError(
                f"module '{module_name}' has no attribute '{attribute}' "
                f"(entry point '{entry_point}')."
            ) from None
    return target
