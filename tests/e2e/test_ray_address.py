"""ktsweep uses the Ray it is told about, or a new local one; a cluster that does not answer is
one line naming the address and the setting, not a hang."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def test_an_address_where_no_ray_answers_is_one_line_naming_it(tmp_path):
    address = f"127.0.0.1:{closed_port()}"
    for setting in ("KTSWEEP_RAY_ADDRESS", "RAY_ADDRESS"):
        env = {**os.environ, setting: address, "COLUMNS": "300"}
        env.pop("KTSWEEP_RAY_ADDRESS" if setting == "RAY_ADDRESS" else "RAY_ADDRESS", None)
        done = subprocess.run(
            [sys.executable, "-m", "ktsweep.service.cli", "serve", "--port", str(closed_port())],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        output = (done.stdout + done.stderr).strip()
        assert done.returncode == 2, output
        assert f"no Ray cluster answers at {address} ({setting})" in output
        assert "Traceback" not in output
