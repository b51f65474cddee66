"""The child process that runs a sweep's scheduler code (`scheduler.source`).

Run as a script (the controller runs this file by its path, without importing ktsweep: it
needs only Optuna), it reads one JSON request a line on stdin and writes one JSON answer a line
on stdout; what the user's code prints goes to stderr. It holds one Optuna
study for the life of a sweep, built by the user's `optimizer()` (a study, or a sampler) or
from the sweep's directions, and asks it for trials (with the user's `search_space(trial)`, or
over the dimensions the controller sends) and tells it how they ended.

Requests (`op` names each); every answer is a JSON object, with `error` when the request failed:

- `check`: import `source` and check `optimizer` and `search_space` are functions in it.
  Answer: `problems`, a list of `{path, message}`.
- `start`: `source`, `optimizer`, `search_space` (each may be None), `directions` (one per
  objective), `dimensions` (`[{name, choices}]`, `choices` the number of values of a
  categorical dimension, None for one searched by its quantile) and `seed`. Answer: `{}`.
- `ask`: `number` (the sweep's trial number), and optionally `params` to replay (a trial that
  ran before this child existed). Answer: `hyperparameters` (from `search_space`) or
  `coordinates` (over the dimensions).
- `tell`: `number` and `values` (one per objective; None: the trial failed). Answer: `{}`.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import sys
from pathlib import Path
from typing import Any

# The name the user's source file is imported under in the child.
SOURCE_MODULE = "ktsweep_scheduler_source"


class SchedulerCodeError(Exception):
    """The user's scheduler code failed, or gave what the sweep cannot use."""


def load_source(source: str) -> Any:
    """Import the file `source` (its folder joins the import path, for its own imports)."""
    path = Path(source)
    sys.path.insert(0, str(path.parent))
    module_spec = importlib.util.spec_from_file_location(SOURCE_MODULE, path)
    if module_spec is None or module_spec.loader is None:
        raise SchedulerCodeError(f"'{source}' cannot be imported as a Python file.")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[SOURCE_MODULE] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        raise SchedulerCodeError(
            f"importing scheduler source '{source}' failed: {type(exc).__name__}: {exc}"
        ) from exc
    return module


def named_function(module: Any, source: str, name: str) -> Any:
    function = getattr(module, name, None)
    if function is None:
        raise SchedulerCodeError(f"'{source}' defines no function '{name}'; name one it defines.")
    if not callable(function):
        raise SchedulerCodeError(f"'{name}' in '{source}' is not a function; name one.")
    return function


class StudyHolder:
    """The sweep's study and the trials it was asked for, by the sweep's trial number."""

    def __init__(self, request: dict[str, Any]):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna = optuna
        self.directions: list[str] = request["directions"]
        self.dimensions: list[dict[str, Any]] = request.get("dimensions") or []
        source = request["source"]
        module = load_source(source)
        self.search_space = (
            named_function(module, source, request["search_space"])
            if request.get("search_space")
            else None
        )
        self.study = self._study(module, source, request.get("optimizer"), request.get("seed"))
        self.trials: dict[int, Any] = {}

    def _study(self, module: Any, source: str, optimizer: str | None, seed: int | None) -> Any:
        optuna = self.optuna
        if optimizer is None:
            if len(self.directions) > 1:
                sampler = optuna.samplers.NSGAIISampler(seed=seed)
            else:
                sampler = optuna.samplers.TPESampler(seed=seed)
            return optuna.create_study(directions=self.directions, sampler=sampler)
        try:
            made = named_function(module, source, optimizer)()
        except SchedulerCodeError:
            raise
        except Exception as exc:
            raise SchedulerCodeError(
                f"`{optimizer}()` in '{source}' failed: {type(exc).__name__}: {exc}"
            ) from exc
        if isinstance(made, optuna.samplers.BaseSampler):
            return optuna.create_study(directions=self.directions, sampler=made)
        if isinstance(made, optuna.Study):
            directions = [direction.name.lower() for direction in made.directions]
            if directions != self.directions:
                raise SchedulerCodeError(
                    f"the study `{optimizer}()` returns has directions {directions}, but the "
                    f"sweep's goals are {self.directions} (from `metric` or `metrics`); create "
                    "the study with the sweep's directions, or return a sampler."
                )
            return made
        raise SchedulerCodeError(
            f"`{optimizer}()` in '{source}' returned {type(made).__name__}; return an "
            "`optuna.Study` or an `optuna.samplers.BaseSampler`."
        )

    def ask(self, number: int, params: dict[str, Any] | None) -> dict[str, Any]:
        if params:
            self.study.enqueue_trial(params)
        trial = self.study.ask()
        self.trials[number] = trial
        if self.search_space is None:
            coordinates: dict[str, Any] = {}
            for dimension in self.dimensions:
                if dimension["choices"] is not None:
                    coordinates[dimension["name"]] = trial.suggest_categorical(
                        dimension["name"], list(range(dimension["choices"]))
                    )
                else:
                    coordinates[dimension["name"]] = trial.suggest_float(dimension["name"], 0, 1)
            return {"coordinates": coordinates}
        try:
            returned = self.search_space(trial)
        except Exception as exc:
            self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
            del self.trials[number]
            raise SchedulerCodeError(
                f"`{self.search_space.__name__}(trial)` failed: {type(exc).__name__}: {exc}"
            ) from exc
        if returned is not None and not isinstance(returned, dict):
            self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
            del self.trials[number]
            raise SchedulerCodeError(
                f"`{self.search_space.__name__}(trial)` returned {type(returned).__name__}; "
                "return nothing (the trial's parameters are its hyperparameters) or a dict."
            )
        return {"hyperparameters": dict(trial.params) if returned is None else returned}

    def tell(self, number: int, values: list[float] | None) -> dict[str, Any]:
        trial = self.trials.pop(number, None)
        if trial is None:
            return {}
        if values is None:
            self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(trial, values if len(values) > 1 else values[0])
        return {}


def check(request: dict[str, Any]) -> dict[str, Any]:
    """Problems with the names a spec's `scheduler` gives, found by importing its source."""
    try:
        module = load_source(request["source"])
    except SchedulerCodeError as exc:
        return {"problems": [{"path": "scheduler.source", "message": str(exc)}]}
    problems = []
    for field in ("optimizer", "search_space"):
        name = request.get(field)
        if not name:
            continue
        try:
            function = named_function(module, request["source"], name)
        except SchedulerCodeError as exc:
            problems.append({"path": f"scheduler.{field}", "message": str(exc)})
            continue
        takes = 1 if field == "search_space" else 0
        try:
            inspect.signature(function).bind(*([None] * takes))
        except TypeError:
            arguments = "one argument (the trial)" if takes else "no arguments"
            problems.append(
                {"path": f"scheduler.{field}", "message": f"`{name}` must take {arguments}."}
            )
        except ValueError:  # no signature to read (a builtin): let the call say
            pass
    return {"problems": problems}


def main() -> None:
    """The child's loop: its own stdout is for answers; what the code prints goes to stderr."""
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    holder: StudyHolder | None = None
    for line in sys.stdin:
        try:
            request = json.loads(line)
            op = request.get("op")
            if op == "check":
                answer = check(request)
            elif op == "start":
                holder = StudyHolder(request)
                answer = {}
            elif holder is None:
                answer = {"error": "the child has no study yet: send `start` first."}
            elif op == "ask":
                answer = holder.ask(request["number"], request.get("params"))
            elif op == "tell":
                answer = holder.tell(request["number"], request.get("values"))
            else:
                answer = {"error": f"unknown request {op!r}"}
        except SchedulerCodeError as exc:
            answer = {"error": str(exc)}
        except Exception as exc:  # never leave the controller without an answer
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        answers.write(json.dumps(answer, default=str) + "\n")
        answers.flush()


if __name__ == "__main__":
    main()
