"""Runs a spec's code (its hypermodel, data and callback entry points) in a child process.

The controller never imports or runs the code a spec names in its own process: importing a
module runs it, and `build(hp)` is arbitrary code. The one thing the controller needs from that
code before any trial runs is the search space `build(hp)` declares (and, at submission, a
check that each entry point resolves to what it should). A child process does that: it has no
secret in its environment, it answers in JSON (never a pickle, which would run code here), and
a request that takes longer than `KTSWEEP_USER_CODE_TIMEOUT_S` (default 60 s) kills it. The
child stays up between requests, so only the first request pays for importing Keras.

`python -m ktsweep.service.search.user_code` is that child: it reads one JSON request a line
on stdin and writes one JSON answer a line.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import subprocess
import sys
import threading
from typing import Any

DEFAULT_TIMEOUT_S = 60.0


class UserCodeError(RuntimeError):
    """The child could not answer: it timed out, or the code ended its process."""


def timeout_s() -> float:
    """`KTSWEEP_USER_CODE_TIMEOUT_S`: the longest one request to the child may take."""
    try:
        return float(os.environ.get("KTSWEEP_USER_CODE_TIMEOUT_S", DEFAULT_TIMEOUT_S))
    except ValueError:
        return DEFAULT_TIMEOUT_S


def exchange_line(process: subprocess.Popen, request: dict[str, Any], timeout: float) -> str | None:
    """Send `request` to a child as one JSON line and read its one-line answer: "" when the
    child has died (or its pipe broke), None when no answer came within `timeout` seconds."""
    try:
        process.stdin.write(json.dumps(request) + "\n")
        process.stdin.flush()
    except (BrokenPipeError, OSError):
        return ""
    answer: list[str] = []
    reader = threading.Thread(target=lambda: answer.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        return None
    return answer[0] if answer else ""


class UserCodeProcess:
    """The child process, started on first use and again after it died or was killed."""

    def __init__(self) -> None:
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()
        atexit.register(self.close)

    def ask(self, request: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send one request and wait for its answer (requests take turns)."""
        timeout = timeout_s() if timeout is None else timeout
        with self._lock:
            process = self._running()
            answer = exchange_line(process, request, timeout)
            if answer is None:
                self._kill()
                raise UserCodeError(
                    f"the spec's code took longer than {timeout:g} s (building the model to "
                    "discover its hyperparameters); make `build(hp)` and the module's import "
                    "faster, list the hyperparameters in `parameters`, or ask the operator to "
                    "raise KTSWEEP_USER_CODE_TIMEOUT_S."
                )
            if not answer:
                code = process.wait()
                self._process = None
                raise UserCodeError(
                    f"the spec's code ended the process that imported it (exit code {code}); "
                    "a module or `build(hp)` must not exit or kill its process."
                )
            return json.loads(answer)

    def close(self) -> None:
        with self._lock:
            self._kill()

    def _running(self) -> subprocess.Popen:
        if self._process is not None and self._process.poll() is None:
            return self._process
        from ktsweep.worker.environment import without_secrets

        environment = without_secrets(os.environ)
        # The controller's import path, so the child finds the modules the controller would.
        environment["PYTHONPATH"] = os.pathsep.join(path for path in sys.path if path)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "ktsweep.service.search.user_code"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=environment,
            text=True,
        )
        return self._process

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None


_child = UserCodeProcess()


def ask_child(request: dict[str, Any]) -> dict[str, Any]:
    """Ask the shared child process (see `inspect_entry_points` for the request)."""
    return _child.ask(request)


# --- in the child ------------------------------------------------------------------------------


def inspect_entry_points(request: dict[str, Any]) -> dict[str, Any]:
    """What the child answers: the hypermodel's space and the entry points' problems.

    Request: `hypermodel`, `data` and `callback` entry points (each may be absent), and
    `callback_options`, the option names a spec gives the callback.
    Answer: `space` (the `keras_tuner.HyperParameters` config `build(hp)` declares, or None)
    and `problems`, a list of `{path, message}`.
    """
    from ktsweep.worker.entry_points import (
        EntryPointError,
        EntryPointModuleNotFound,
        resolve_entry_point,
    )

    answer: dict[str, Any] = {"space": None, "problems": []}

    def problem(path: str, message: str) -> None:
        answer["problems"].append({"path": path, "message": message})

    if request.get("hypermodel"):
        try:
            answer["space"] = _discover(resolve_entry_point(request["hypermodel"]))
        except EntryPointError as exc:
            problem("trial.hypermodel", str(exc))
        except Exception as exc:
            problem(
                "trial.hypermodel",
                f"building the model with `{request['hypermodel']}` to discover its "
                f"hyperparameters failed: {type(exc).__name__}: {exc}. Fix `build(hp)`, or list "
                "the hyperparameters in `parameters`.",
            )
    # A module this host cannot import may be installed on the workers only: they check it.
    if request.get("data"):
        try:
            if not callable(resolve_entry_point(request["data"])):
                problem("trial.data", f"'{request['data']}' is not a function; name one.")
        except EntryPointModuleNotFound:
            pass
        except EntryPointError as exc:
            problem("trial.data", str(exc))
    if request.get("callback"):
        from ktsweep.worker.trial_runner import check_eval_callback

        try:
            check_eval_callback(request["callback"], request.get("callback_options") or [])
        except EntryPointModuleNotFound:
            pass
        except (EntryPointError, TypeError) as exc:
            problem("callbacks.eval_table", str(exc))
    return answer


def _discover(build: Any) -> dict[str, Any]:
    """Keras Tuner's own discovery: a throwaway tuner builds the model once per scope."""
    import tempfile

    import keras
    import keras_tuner as kt

    if isinstance(build, type) and issubclass(build, kt.HyperModel):
        build = build()
    try:
        with tempfile.TemporaryDirectory() as directory:
            tuner = kt.RandomSearch(
                hypermodel=build,
                objective="val_loss",
                max_trials=1,
                directory=directory,
                project_name="space",
                overwrite=True,
            )
            return tuner.oracle.get_space().get_config()
    finally:
        keras.backend.clear_session()


def main() -> None:
    """The child's loop: its own stdout is for answers; what the code prints goes to stderr."""
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    from ktsweep.backend import MissingBackendError, require_backend

    with contextlib.suppress(MissingBackendError):  # the answers then say what failed
        require_backend()
    for line in sys.stdin:
        try:
            answer = inspect_entry_points(json.loads(line))
        except Exception as exc:  # never leave the controller without an answer
            answer = {"space": None, "problems": [{"path": "trial", "message": repr(exc)}]}
        answers.write(json.dumps(answer, default=str) + "\n")
        answers.flush()


if __name__ == "__main__":
    main()
