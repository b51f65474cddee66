"""The token of a controller on this machine, kept in a file only its user can read.

A controller started with no `KTSWEEP_API_TOKENS` makes up a random token (as Jupyter does), so
that no web page the user opens can drive it. It prints a ready URL with the token, and keeps
the token in `<runtime dir>/server-<port>.token` (mode 0600, in a 0700 folder): `ktsweep`
commands and `Client` on the same machine read it from there, so nobody copies anything.

The runtime folder is `KTSWEEP_RUNTIME_DIR`, default `~/.ktsweep/runtime`.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit


def runtime_dir() -> Path:
    """Where the token files of this user's controllers are."""
    return Path(os.environ.get("KTSWEEP_RUNTIME_DIR") or Path.home() / ".ktsweep" / "runtime")


def token_file(port: int) -> Path:
    return runtime_dir() / f"server-{int(port)}.token"


def new_token() -> str:
    """A random token, as strong as Jupyter's."""
    return secrets.token_urlsafe(32)


def write_token(port: int, token: str) -> Path:
    """Keep `token` for the controller on `port`, readable by this user alone."""
    folder = runtime_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    path = token_file(port)
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(token)
    return path


def remove_token(port: int, token: str) -> None:
    """Forget the token file, if it still holds this controller's token."""
    path = token_file(port)
    try:
        if path.read_text().strip() == token:
            path.unlink()
    except OSError:
        pass


def read_token(url: str) -> str | None:
    """The token of the controller at `url`, when it runs on this machine and kept one."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not is_loopback(host):
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        return token_file(port).read_text().strip() or None
    except OSError:
        return None


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine's loopback interface."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
