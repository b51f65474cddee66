"""The child process that runs a sweep's scheduler code (`scheduler.source`).

Run as a script (the controller runs this file by its path, without importing ktsweep: it
needs only the engine's library), it reads one JSON request a line on stdin and writes one
JSON answer a line on stdout; what the user's code prints goes to stderr. It holds, for the
life of a sweep, one Optuna study (`engine: optuna`), built by the user's `optimizer()` (a
study, or a sampler) or from the sweep's directions, or one Ax client (`engine: ax`), the one
the user's `optimizer()` returns or a new one, whose experiment it configures with the user's
`search_space()` (Ax parameter configs) or the dimensions the controller sends, and whose
objectives are the sweep's. It asks it for trials and tells it how they ended.

Requests (`op` names each); every answer is a JSON object, with `error` when the request failed:

- `check`: `engine`; import `source` and check `optimizer` and `search_space` are functions in
  it, taking what the engine passes. Answer: `problems`, a list of `{path, message}`.
- `start`: `engine`, `source`, `optimizer`, `search_space` (each may be None), `directions`
  (one per objective), `dimensions` (`[{name, choices}]`, `choices` the number of values of a
  categorical dimension, None for one searched by its quantile) and `seed`. Answer: `{}`.
- `ask`: `number` (the sweep's trial number), and optionally `params` to replay (a trial that
  ran before this child existed). Answer: `hyperparameters` (from `search_space`) or
  `coordinates` (over the dimensions); or, from Ax, `waiting` (true) when it needs running
  trials' results before it can suggest more.
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
            # As `engine: optuna` without code (`OptunaStudySearch`): multi-objective TPE for
            # several objectives, the Gaussian process for one (TPE without PyTorch).
            if len(self.directions) == 1 and importlib.util.find_spec("torch") is not None:
                sampler = optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False)
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


class AxClientHolder:
    """The sweep's Ax client (`engine: ax`) and the trials it made, by the sweep's trial number.

    The client is the one `optimizer()` returns (an `ax.Client` whose experiment is not
    configured yet: ktsweep configures it), or a new one seeded with the sweep's seed. Its
    parameters are those `search_space()` returns, named as the trial's hyperparameters, or
    else one per dimension the controller sends (`p0`, `p1`, ...: a categorical dimension an
    unordered choice of its value index, any other a float in [0, 1], its quantile). Its
    objectives are the sweep's goals, named `objective_0`, `objective_1`, ... (Ax parses "/"
    in a metric name as a division).
    """

    def __init__(self, request: dict[str, Any]):
        import logging

        from ax import ChoiceParameterConfig, Client, RangeParameterConfig

        # Ax gives each of its loggers its own level (INFO): a line per trial is too many.
        for name in list(logging.root.manager.loggerDict):
            if name.split(".")[0] in ("ax", "botorch", "gpytorch", "linear_operator"):
                logging.getLogger(name).setLevel(logging.WARNING)
        self.directions: list[str] = request["directions"]
        self.dimensions: list[dict[str, Any]] = request.get("dimensions") or []
        self.ax_names = {d["name"]: f"p{i}" for i, d in enumerate(self.dimensions)}
        source = request["source"]
        module = load_source(source)
        optimizer = request.get("optimizer")
        if optimizer is None:
            client = Client(random_seed=request.get("seed"))
        else:
            client = _called(named_function(module, source, optimizer), source)
            if not isinstance(client, Client):
                raise SchedulerCodeError(
                    f"`{optimizer}()` in '{source}' returned {type(client).__name__}; return an "
                    "`ax.Client` (`from ax import Client`), before `configure_experiment`: "
                    "ktsweep configures its experiment and objectives."
                )
        self.search_space = request.get("search_space")
        if self.search_space is not None:
            parameters = _called(named_function(module, source, self.search_space), source)
            if not isinstance(parameters, (list, tuple)) or not all(
                isinstance(p, (RangeParameterConfig, ChoiceParameterConfig)) for p in parameters
            ):
                raise SchedulerCodeError(
                    f"`{self.search_space}()` in '{source}' returned "
                    f"{type(parameters).__name__}; return a list of Ax parameter configs "
                    "(`ax.RangeParameterConfig`, `ax.ChoiceParameterConfig`)."
                )
        else:
            parameters = [
                ChoiceParameterConfig(
                    name=self.ax_names[d["name"]],
                    values=list(range(d["choices"])),
                    parameter_type="int",
                    is_ordered=False,
                )
                if d["choices"] is not None
                else RangeParameterConfig(
                    name=self.ax_names[d["name"]], bounds=(0.0, 1.0), parameter_type="float"
                )
                for d in self.dimensions
            ]
        self.parameter_names = [parameter.name for parameter in parameters]
        self.client = _configured(client, parameters, self.directions, optimizer)
        self.trials: dict[int, int] = {}  # the sweep's trial number -> Ax's trial index

    def ask(self, number: int, params: dict[str, Any] | None) -> dict[str, Any]:
        from ax.exceptions.core import DataRequiredError
        from ax.exceptions.generation_strategy import MaxParallelismReachedException

        if params:  # a trial that ran before: attached where it lay
            self.trials[number] = self.client.attach_trial(self._ax_parameters(params))
            return {}
        try:
            made = self.client.get_next_trials(max_trials=1)
        except (DataRequiredError, MaxParallelismReachedException):
            made = {}
        if not made:
            return {"waiting": True}
        ((index, parameters),) = made.items()
        self.trials[number] = index
        parameters = {name: _plain(value) for name, value in parameters.items()}
        if self.search_space is not None:
            return {"hyperparameters": parameters}
        return {
            "coordinates": {
                d["name"]: parameters[self.ax_names[d["name"]]] for d in self.dimensions
            }
        }

    def tell(self, number: int, values: list[float] | None) -> dict[str, Any]:
        index = self.trials.pop(number, None)
        if index is None:
            return {}
        if values is None:
            self.client.mark_trial_failed(index)
        else:
            self.client.complete_trial(
                index, raw_data={f"objective_{i}": value for i, value in enumerate(values)}
            )
        return {}

    def _ax_parameters(self, params: dict[str, Any]) -> dict[str, Any]:
        """A replayed trial's parameters, named as the experiment names them."""
        if self.search_space is not None:
            return {name: params[name] for name in self.parameter_names if name in params}
        return {
            self.ax_names[d["name"]]: params.get(
                d["name"], d["choices"] // 2 if d["choices"] is not None else 0.5
            )
            for d in self.dimensions
        }


def _called(function: Any, source: str) -> Any:
    """`function()`, its failure said as the user's code's."""
    try:
        return function()
    except Exception as exc:
        raise SchedulerCodeError(
            f"`{function.__name__}()` in '{source}' failed: {type(exc).__name__}: {exc}"
        ) from exc


def _configured(client: Any, parameters: list[Any], directions: list[str], optimizer: Any) -> Any:
    """`client` with its experiment's parameters and the sweep's objectives configured."""
    from ax.exceptions.core import UnsupportedError

    try:
        client.configure_experiment(parameters=parameters, name="ktsweep")
    except UnsupportedError as exc:
        raise SchedulerCodeError(
            f"the Ax client `{optimizer}()` returns already has an experiment ({exc}); return "
            "it before `configure_experiment`: ktsweep configures the experiment with "
            "`search_space()`'s parameters (or the spec's `parameters`)."
        ) from exc
    except Exception as exc:
        raise SchedulerCodeError(
            f"Ax refused the sweep's parameters: {type(exc).__name__}: {exc}"
        ) from exc
    client.configure_optimization(
        objective=", ".join(
            ("" if direction == "maximize" else "-") + f"objective_{i}"
            for i, direction in enumerate(directions)
        )
    )
    return client


def _plain(value: Any) -> Any:
    """A NumPy scalar as the Python number it holds (JSON takes those only)."""
    return value.item() if hasattr(value, "item") else value


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
        # Optuna's `search_space` defines a trial's parameters; Ax's returns them all.
        takes = 1 if field == "search_space" and request.get("engine") != "ax" else 0
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
    holder: StudyHolder | AxClientHolder | None = None
    for line in sys.stdin:
        try:
            request = json.loads(line)
            op = request.get("op")
            if op == "check":
                answer = check(request)
            elif op == "start":
                holder = (AxClientHolder if request.get("engine") == "ax" else StudyHolder)(request)
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
