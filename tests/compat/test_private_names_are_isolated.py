"""Only the compat modules import a library's internals: the rest of ktsweep uses public names.

Attribute access (`oracle._brackets`) can't be told apart from ktsweep's own private names
reliably; importing a library's internal package is what this checks."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("callbacks", "worker", "service")
INTERNAL_PACKAGES = (
    "keras_tuner.src",
    "keras.src",
    "wandb.sdk",
    "wandb.proto",
    "tensorflow.python",
    # uvicorn's public API is `uvicorn.run`, `Config` and `Server`; the rest is its own.
    "uvicorn.protocols",
    "uvicorn.supervisors",
    "uvicorn.lifespan",
    "uvicorn.loops",
    "uvicorn.middleware",
)


def _is_internal(module: str) -> bool:
    return any(
        module == package or module.startswith(package + ".") for package in INTERNAL_PACKAGES
    )


def _internal_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from wandb import sdk` reaches the internal package too.
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        internal = [name for name in names if _is_internal(name)]
        if internal:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {internal[0]}")
    return found


def _sources() -> list[Path]:
    return [
        path
        for layer in LAYERS
        for path in sorted((ROOT / layer).rglob("*.py"))
        if "compat" not in path.relative_to(ROOT).parts
    ]


def test_the_layers_are_where_this_looks():
    assert all((ROOT / layer / "__init__.py").is_file() for layer in LAYERS)
    assert len(_sources()) > 20


def test_only_compat_modules_import_a_librarys_internals():
    offenders = [found for path in _sources() for found in _internal_imports(path)]
    assert not offenders, (
        "Import these through the layer's compat/<library>.py (with a comment saying why and a "
        "contract test in tests/compat/):\n" + "\n".join(offenders)
    )
