"""`scheduler: {engine: optuna | ax, source, optimizer, search_space}`: the user's scheduler
code, for Optuna or for Ax.

`source` is a Python file. With `engine: optuna`, `optimizer` names a function in it that
returns the study (an `optuna.Study`) or its sampler (an `optuna.samplers.BaseSampler`), and
`search_space` a function that defines a trial's parameters with `trial.suggest_*` (Optuna's
define-by-run). With `engine: ax`, `optimizer` returns an `ax.Client` (made with the options
the user wants, its experiment not configured yet), and `search_space` returns the
experiment's parameters (a list of `ax.RangeParameterConfig` / `ax.ChoiceParameterConfig`);
ktsweep configures the experiment with them (or with the spec's `parameters`) and the
objectives with the sweep's goals (`metric` or `metrics`).

That code is the user's, so the controller never runs it in its own process: each sweep gets a
child process of its own (`_child.py`, next to this module) that imports `source` and holds the
study or client for the sweep's life. The controller asks it for each trial and tells it how
each trial ended, over a pipe, in JSON. The child's environment has none of the controller's
secrets, and a request that takes longer than `KTSWEEP_USER_CODE_TIMEOUT_S` (default 60 s) kills
it: the suggestion then fails with an error saying so, and the next one starts a new child,
which replays the sweep's trials into a new study (or client) first. A controller restart does
the same.
"""

from __future__ import annotations

import json
import keyword
import logging
import os
import subprocess
import sys
import threading
import weakref
from pathlib import Path
from typing import Any

from ktsweep.lifecycle import ACTIVE_STATES, SUCCEEDED_STATES
from ktsweep.service.pareto import objective_values
from ktsweep.service.search.base import SearchMethod, TrialRecord, finished_in_order
from ktsweep.service.search.space import SearchSpace, nest
from ktsweep.service.search.user_code import UserCodeError, exchange_line, timeout_s
from ktsweep.service.spec import SpecProblem, SweepSpec, objectives_of

# The child runs `_child.py` by its path: `-m` would import this package first (scipy and the
# rest, seconds of start-up the child does not need). run_path adds nothing to the import path.
_CHILD = str(Path(__file__).with_name("_child.py"))
_BOOT = "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__')"

log = logging.getLogger(__name__)


# What `optimizer` and `search_space` are, by engine.
_FUNCTIONS = {
    "optuna": "`optimizer` (a function returning the study or its sampler) or `search_space` "
    "(a function defining a trial's parameters)",
    "ax": "`optimizer` (a function returning an `ax.Client`) or `search_space` (a function "
    "returning the experiment's parameters, Ax parameter configs)",
}


def uses_scheduler_code(spec: SweepSpec) -> bool:
    """Whether a sweep's trials come from the user's scheduler code (`scheduler.source`)."""
    return spec.scheduler is not None and spec.scheduler.source is not None


def source_path(source: str) -> Path:
    """Where `scheduler.source` lies: relative to the controller's working folder, symlinks
    followed."""
    return (Path.cwd() / source).resolve()


def check_scheduler_code(spec: SweepSpec, settings: Any) -> list[SpecProblem]:
    """Problems with the code a spec's `scheduler` names (empty when fine), and with what
    its engine needs (`engine: ax` and scheduler code learn from `metric` or `metrics`).

    `source` must resolve (symlinks followed) to a `.py` file in a folder programs may run from
    (the controller's working folder, or `KTSWEEP_ALLOWED_PROGRAM_DIRS`), and not to the
    controller's own files; `optimizer` and `search_space` are function names in it, and need
    `source`. `search_space` replaces `parameters`, so a spec gives one of them. When the names
    pass, the source is imported in a child process (never here) to check it defines them.
    """
    scheduler = spec.scheduler
    if scheduler is None:
        return []
    problems: list[SpecProblem] = []
    for field in ("optimizer", "search_space"):
        name = getattr(scheduler, field)
        if name is None:
            continue
        if not name.isidentifier() or keyword.iskeyword(name):
            problems.append(
                SpecProblem(
                    path=f"scheduler.{field}",
                    message=f"'{name}' is not a function name; give the name of a function "
                    "defined in `scheduler.source` (no module, no dots).",
                )
            )
        if scheduler.source is None:
            problems.append(
                SpecProblem(
                    path=f"scheduler.{field}",
                    message=f"`{field}` names a function in `scheduler.source`; add `source`, "
                    "the Python file that defines it.",
                )
            )
    if scheduler.engine == "ax" and not objectives_of(spec):
        problems.append(
            SpecProblem(
                path="metric",
                message="engine 'ax' learns from each trial's objective; add `metric` (or "
                "`metrics` for several objectives).",
            )
        )
    if scheduler.source is None:
        return problems
    if scheduler.optimizer is None and scheduler.search_space is None:
        uses = _FUNCTIONS["optuna"]
        problems.append(
            SpecProblem(
                path="scheduler.source",
                message=f"`source` is used through {_FUNCTIONS.get(scheduler.engine, uses)}; "
                "name at least one of them.",
            )
        )
    if scheduler.search_space is not None and spec.parameters:
        problems.append(
            SpecProblem(
                path="scheduler.search_space",
                message="`search_space` defines the parameters itself; give either "
                "`parameters` or `scheduler.search_space`, not both.",
            )
        )
    if not objectives_of(spec) and scheduler.engine == "optuna":
        problems.append(
            SpecProblem(
                path="metric",
                message="the study learns from each trial's objective; add `metric` (or "
                "`metrics` for several objectives).",
            )
        )
    path = source_path(scheduler.source)
    message = source_problem(path, settings)
    if message is not None:
        problems.append(SpecProblem(path="scheduler.source", message=message))
    if problems:
        return problems
    child = SchedulerCodeProcess()
    try:
        answer = child.ask(
            {
                "op": "check",
                "engine": scheduler.engine,
                "source": str(path),
                "optimizer": scheduler.optimizer,
                "search_space": scheduler.search_space,
            }
        )
    except UserCodeError as exc:
        return [SpecProblem(path="scheduler.source", message=str(exc))]
    finally:
        child.close()
    return [SpecProblem(path=p["path"], message=p["message"]) for p in answer["problems"]]


def source_problem(path: Path, settings: Any) -> str | None:
    """Why the (resolved) source file `path` may not run, or None: it must be a `.py` file in a
    folder programs may run from, and none of the controller's own files."""
    from ktsweep.service.entry_policy import _controller_files, allowed_program_dirs

    allowed = allowed_program_dirs(settings)
    if not any(path.is_relative_to(directory) for directory in allowed):
        return (
            f"source '{path}' is outside the folders code may run from "
            f"({', '.join(map(str, allowed))}); the operator can add its folder to "
            "KTSWEEP_ALLOWED_PROGRAM_DIRS (comma-separated) and restart the controller."
        )
    if any(path == own or path.is_relative_to(own) for own in _controller_files(settings)):
        return (
            f"source '{path}' is one of the controller's own files (its database or "
            "artifact folder); name the Python file that defines the scheduler's functions."
        )
    if path.suffix != ".py" or not path.is_file():
        return (
            f"source '{path}' is not a Python (.py) file; give its path relative to the "
            "controller's working folder."
        )
    return None


class SchedulerCodeProcess:
    """One child process running a sweep's scheduler code, started on first use."""

    def __init__(self) -> None:
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._finalizer: weakref.finalize | None = None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def ask(self, request: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send one request and wait for its answer.

        Raises:
            UserCodeError: the code failed (the answer's error), took longer than `timeout`
                (default `KTSWEEP_USER_CODE_TIMEOUT_S`; the child is killed), or ended the
                child's process.
        """
        timeout = timeout_s() if timeout is None else timeout
        with self._lock:
            process = self._running()
            answer = exchange_line(process, request, timeout)
            if answer is None:
                self._kill()
                raise UserCodeError(
                    f"the scheduler code took longer than {timeout:g} s to answer "
                    f"({request['op']!r}); make its import, `optimizer()` and "
                    "`search_space` faster, or ask the operator to raise "
                    "KTSWEEP_USER_CODE_TIMEOUT_S."
                )
            if not answer:
                code = process.wait()
                self._process = None
                raise UserCodeError(
                    f"the scheduler code ended the process that ran it (exit code {code}); "
                    "`source`, `optimizer` and `search_space` must not exit or kill it."
                )
        decoded = json.loads(answer)
        if "error" in decoded:
            raise UserCodeError(f"the scheduler code failed: {decoded['error']}")
        return decoded

    def close(self) -> None:
        with self._lock:
            self._kill()

    def _running(self) -> subprocess.Popen:
        if self.alive:
            return self._process
        from ktsweep.worker.environment import without_secrets

        environment = without_secrets(os.environ)
        # The controller's import path, so the child imports ktsweep as the controller does.
        environment["PYTHONPATH"] = os.pathsep.join(path for path in sys.path if path)
        self._process = subprocess.Popen(
            [sys.executable, "-c", _BOOT, _CHILD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=environment,
            text=True,
        )
        # Killed with this object, or when the controller exits (weakref.finalize's atexit).
        if self._finalizer is not None:
            self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _kill, [self._process])
        return self._process

    def _kill(self) -> None:
        if self._process is not None:
            _kill([self._process])
            self._process = None


def _kill(processes: list[subprocess.Popen | None]) -> None:
    for process in processes:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()


def config_from_coordinates(space: SearchSpace, coordinates: dict[str, Any]) -> dict[str, Any]:
    """The configuration at `coordinates` (as `SearchSpace.coordinates` gives them: a
    categorical dimension's value index, another's quantile), leaving out inactive dimensions;
    nested by "/". A dimension without a coordinate is at its middle."""
    flat: dict[str, Any] = {}
    for dimension in space.dimensions:
        if not dimension.is_active(flat):
            continue
        if dimension.is_constant:
            flat[dimension.name] = dimension.from_unit(0.0)
        elif dimension.choices is not None:
            index = int(coordinates.get(dimension.name, len(dimension.choices) // 2))
            flat[dimension.name] = dimension.choices[index]
        else:
            flat[dimension.name] = dimension.from_unit(float(coordinates.get(dimension.name, 0.5)))
    return nest(flat)


class UserCodeSearch(SearchMethod):
    """Suggests trials from the study (or Ax client) the user's `scheduler` code builds, run
    in a child.

    With `engine: optuna`, the study is the one `optimizer()` returns, or one with the sampler
    it returns (its directions the sweep's goals), or else a Gaussian process for one objective
    (TPE without PyTorch) and multi-objective TPE for several, as `engine: optuna` without
    code; a trial's parameters are what `search_space(trial)` suggests (or the dict it
    returns). With `engine: ax`, the client is the one `optimizer()` returns, or a new one, its
    experiment's parameters those `search_space()` returns and its objectives the sweep's
    goals; Ax may wait for running trials' results before it suggests more (`is_waiting`).
    Without `search_space`, either searches the spec's `parameters` as `engine: optuna` does (a
    categorical by value index, another by its quantile).

    A completed or stopped trial is told with its objective values (see
    `ktsweep.service.pareto.objective_values`); a failed or cancelled one, or one without every
    objective's value, is told as failed. `restore` (a controller restart) replays the stored
    trials into a new study or client: each is asked again with its hyperparameters (Optuna:
    `Study.enqueue_trial`, so `search_space` defines the same parameters; Ax:
    `Client.attach_trial`), then told how it ended.

    Args:
        spec: The sweep spec (`method: custom`, `scheduler: {engine: optuna | ax, source,
            ...}`).
        seed: Random seed of the default samplers (or of the Ax client ktsweep makes);
            default: the spec's `seed`.
        space: The search space when there is no `search_space`; default: the spec's
            `parameters`.
        stopping_rule: Unused (a `scheduler` excludes `early_terminate`).
    """

    def __init__(self, spec, seed=None, space=None, stopping_rule=None):
        scheduler = spec.scheduler
        user_space = scheduler.search_space is not None
        super().__init__(spec, seed, SearchSpace([]) if user_space else space, stopping_rule)
        self.objectives = objectives_of(spec)
        self.source = str(source_path(scheduler.source))
        self.user_space = user_space
        self._child = SchedulerCodeProcess()
        # What the child's study holds, to replay into a new child: per trial number, the
        # parameters to enqueue, and (once it ended) its values (None: failed).
        self._asked: dict[int, dict[str, Any]] = {}
        self._told: dict[int, list[float] | None] = {}
        self._started = False
        # Trials end on other threads than the one that suggests: one call at a time, so a
        # trial told while a new child replays the sweep is not lost.
        self._lock = threading.RLock()

    def suggest(self, number: int, trials: list[TrialRecord]) -> dict[str, Any]:
        with self._lock:
            self._ensure_child()
            answer = self._child.ask({"op": "ask", "number": number})
            if answer.get("waiting"):  # Ax needs running trials' results first
                return None
            if self.user_space:
                hyperparameters = answer["hyperparameters"]
                self._asked[number] = hyperparameters
                return hyperparameters
            self._asked[number] = answer["coordinates"]
            return config_from_coordinates(self.space, answer["coordinates"])

    def is_waiting(self, trials: list[TrialRecord]) -> bool:
        return any(trial.state in ACTIVE_STATES for trial in trials)

    @property
    def learns_prior_trials(self) -> bool:
        """Whether `learn_prior_trials` teaches the study anything: not when `search_space`
        defines the space (prior trials are read in the spec's `parameters`)."""
        return not self.user_space

    def tell(self, trial: TrialRecord, value: float | None) -> None:
        values = self.values_of(trial)
        with self._lock:
            self._told[trial.number] = values
            if not (self._started and self._child.alive and trial.number in self._asked):
                return  # a new child learns it when it replays the sweep
            try:
                self._child.ask({"op": "tell", "number": trial.number, "values": values})
            except UserCodeError as exc:  # the trial's end is recorded whatever the study says
                log.warning("the study could not learn trial %d: %s", trial.number, exc)

    def restore(self, trials: list[TrialRecord]) -> None:
        """Learn the sweep's stored trials: every one is replayed into the child's study when
        it starts (running ones stay running there until they end)."""
        for trial in sorted(trials, key=lambda t: t.number):
            self._asked[trial.number] = (
                trial.hyperparameters
                if self.user_space
                else self.space.coordinates(trial.hyperparameters)
            )
        for trial in finished_in_order(trials):
            self.observe(trial)

    def learn_prior_trials(self, trials: list[Any]) -> None:
        """Learn completed trials of earlier sweeps (`prior_sweeps`): they are the first
        trials of the study, before the sweep's own (with `parameters` only: they are read in
        the spec's space, and a `search_space` function has none).

        Raises:
            RuntimeError: the method has already suggested or learned a trial.
        """
        if self._asked:
            raise RuntimeError(
                "tell a search method its prior trials before its first suggestion (and "
                "before `restore`)."
            )
        if self.user_space:
            # Prior trials are read in the spec's `parameters`; `search_space` has none.
            log.info("scheduler.search_space defines the space: prior sweeps are not learned")
            return
        # Negative numbers: they are no trial of this sweep, and come first in the replay.
        for index, trial in enumerate(trials):
            number = index - len(trials)
            self._asked[number] = (
                trial.hyperparameters
                if self.user_space
                else self.space.coordinates(trial.hyperparameters)
            )
            self._told[number] = list(trial.values)

    def values_of(self, trial: TrialRecord) -> list[float] | None:
        """The objective values to tell the study (None: the trial failed)."""
        if trial.state not in SUCCEEDED_STATES:
            return None
        if len(self.objectives) == 1:  # its objective, as the other methods learn it
            own = self._own_value(trial)
            if own is not None:
                return [own]
        return objective_values(trial.metrics, self.objectives, trial.history)

    def close(self) -> None:
        """End the child process (the sweep is over)."""
        self._child.close()

    def _ensure_child(self) -> None:
        if self._started and self._child.alive:
            return
        from ktsweep.service.config import Settings

        # Checked again here: the operator may have narrowed the allowed folders since the
        # sweep was submitted (a restarted controller), or the file may have become a link.
        problem = source_problem(source_path(self.spec.scheduler.source), Settings())
        if problem is not None:
            raise UserCodeError(problem)
        scheduler = self.spec.scheduler
        self._started = False
        self._child.ask(
            {
                "op": "start",
                "engine": scheduler.engine,
                "source": self.source,
                "optimizer": scheduler.optimizer,
                "search_space": scheduler.search_space,
                "directions": [objective.goal for objective in self.objectives],
                "dimensions": [
                    {
                        "name": dimension.name,
                        "choices": None if dimension.choices is None else len(dimension.choices),
                    }
                    for dimension in self.space.dimensions
                    if not dimension.is_constant
                ],
                "seed": self.seed,
            }
        )
        for number in sorted(self._asked):
            self._child.ask({"op": "ask", "number": number, "params": self._asked[number]})
            if number in self._told:
                self._child.ask({"op": "tell", "number": number, "values": self._told[number]})
        self._started = True
