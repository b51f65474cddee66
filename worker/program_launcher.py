"""Runs a W&B-sweep script unchanged, with a hook that hands each `wandb.log` to the worker.

`python -m ktsweep.worker.program_launcher train.py --lr=0.01` is what the
`${interpreter} ${program}` macros of a `program` trial expand to: it wraps `wandb.Run.log`
so that every logged dict is also appended, as one JSON line, to the file named by
`KTSWEEP_METRICS_FILE` (the worker reads it to report each step to the controller at once),
then runs the script as `__main__`.
"""

from __future__ import annotations

import json
import os
import runpy
import sys

METRICS_FILE_ENV = "KTSWEEP_METRICS_FILE"


def install_log_hook(path: str) -> None:
    """Append the numbers of every `wandb.log(...)` in this process to `path` (JSON lines)."""
    from ktsweep.worker.compat.wandb import after_each_log

    def append_numbers(data) -> None:
        numbers = {
            key: value
            for key, value in dict(data).items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
        }
        if numbers:
            with open(path, "a") as lines:
                lines.write(json.dumps(numbers) + "\n")

    after_each_log(append_numbers)


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python -m ktsweep.worker.program_launcher PROGRAM [ARGS...]")
    if os.environ.get(METRICS_FILE_ENV):
        install_log_hook(os.environ[METRICS_FILE_ENV])
    program = sys.argv[1]
    sys.argv = sys.argv[1:]
    sys.path.insert(0, os.path.dirname(os.path.abspath(program)))
    runpy.run_path(program, run_name="__main__")


if __name__ == "__main__":
    main()
