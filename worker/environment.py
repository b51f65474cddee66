"""What trial code may see of the environment: everything but the operator's secrets.

The controller holds secrets that would let trial code act as the operator: the API tokens
(`KTSWEEP_API_TOKENS`), the key that signs per-trial tokens (`KTSWEEP_SECRET`) and the database
URL with its password (`KTSWEEP_DATABASE_URL`). Trial code (a hypermodel, a data loader, a
`program`) gets its own per-trial token instead, so none of these may reach it: not through a
local Ray's workers (which inherit the environment of the process that starts Ray), a
`program`'s process, or the child that discovers a hypermodel's search space.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

# Exact names, and a pattern for the secrets an operator may add beside them.
SECRET_VARIABLES = frozenset({"KTSWEEP_API_TOKENS", "KTSWEEP_SECRET", "KTSWEEP_DATABASE_URL"})
_SECRET_PATTERN = re.compile(r"^KTSWEEP_\w*(TOKEN|SECRET|PASSWORD|DATABASE_URL)\w*$")


def is_secret(name: str) -> bool:
    """Whether the environment variable `name` holds a secret of the controller."""
    return name in SECRET_VARIABLES or bool(_SECRET_PATTERN.match(name))


def without_secrets(environment: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of `environment` (default `os.environ`) without the controller's secrets."""
    environment = os.environ if environment is None else environment
    return {name: value for name, value in environment.items() if not is_secret(name)}


@contextmanager
def secrets_hidden() -> Iterator[None]:
    """Take the secrets out of `os.environ` while processes that run trial code are started.

    Child processes (a local Ray's raylet and workers) copy the environment when they start,
    and keep that copy; the secrets are back in this process afterwards.
    """
    hidden = {name: os.environ.pop(name) for name in list(os.environ) if is_secret(name)}
    try:
        yield
    finally:
        os.environ.update(hidden)
