"""Search methods behind one small interface (`SearchMethod`), and the sweep's search space."""

from __future__ import annotations

import logging

from ktsweep.service.search.base import SearchMethod, Suggestion, TrialRecord
from ktsweep.service.search.grid_search import GridSearch, grid_size_problems
from ktsweep.service.search.keras_tuner_space import SpaceDiscoveryError, discover_space
from ktsweep.service.search.random_search import RandomSearch
from ktsweep.service.search.space import SearchSpace
from ktsweep.service.search.stopping import StoppingRule, make_stopping_rule
from ktsweep.service.search.user_code import UserCodeError, ask_child
from ktsweep.service.spec import SpecProblem, SweepSpec

log = logging.getLogger(__name__)


def _method_class(method: str) -> type[SearchMethod]:
    # Model-based methods import their libraries only when a sweep uses them.
    if method == "bayes":
        from ktsweep.service.search.bayes_search import bayes_search_class

        return bayes_search_class()
    if method == "hyperband":
        from ktsweep.service.search.hyperband_search import HyperbandSearch

        return HyperbandSearch
    if method == "tpe":
        from ktsweep.service.search.tpe_search import TpeSearch

        return TpeSearch
    if method == "custom":  # `scheduler: {engine: optuna}`, without user code
        from ktsweep.service.search.optuna_study_search import OptunaStudySearch

        return OptunaStudySearch
    return {"random": RandomSearch, "grid": GridSearch}[method]


def _custom_method_class(spec: SweepSpec) -> type[SearchMethod] | None:
    """The class of a `method: custom` sweep whose `scheduler` is Ax, or runs user code."""
    scheduler = spec.scheduler
    if spec.method != "custom" or scheduler is None:
        return None
    if scheduler.source is not None:
        from ktsweep.service.search.user_code_search import UserCodeSearch

        return UserCodeSearch
    if scheduler.engine == "ax":
        from ktsweep.service.search.ax_search import AxSearch

        return AxSearch
    return None


def _defines_own_space(spec: SweepSpec) -> bool:
    """Whether the sweep's parameters come from its `scheduler.search_space` function."""
    return spec.scheduler is not None and spec.scheduler.search_space is not None


def build_space(spec: SweepSpec) -> SearchSpace:
    """The sweep's search space: its `parameters`, plus what `build(hp)` declares beyond them.

    The hypermodel is imported and built (as Keras Tuner does) to discover its hyperparameters.
    When the spec lists `parameters` and the hypermodel cannot be built here, the parameters
    alone are the space.

    Raises:
        SpaceDiscoveryError: the spec has no `parameters` and the hypermodel's space cannot be
            discovered, or the space is empty.
    """
    keras_tuner_space = None
    if spec.trial is not None and spec.trial.hypermodel is not None:
        try:
            keras_tuner_space = discover_space(spec.trial.hypermodel)
        except SpaceDiscoveryError as exc:
            if spec.parameters is None:
                raise
            log.info("searching only the spec's parameters: %s", exc)
    space = SearchSpace.from_spec(spec, keras_tuner_space)
    if not len(space):
        raise SpaceDiscoveryError(
            "the search space is empty: list hyperparameters in `parameters`, or declare them "
            "in `build(hp)` with hp.Int / hp.Float / hp.Choice."
        )
    return space


def make_search_method(spec: SweepSpec) -> SearchMethod:
    """The search method a spec asks for, with its space and its early-termination rule."""
    # A `scheduler.search_space` function defines the parameters (in its child process).
    space = SearchSpace([]) if _defines_own_space(spec) else build_space(spec)
    method_class = _custom_method_class(spec) or _method_class(spec.method)
    return method_class(spec, space=space, stopping_rule=make_stopping_rule(spec))


def check_trial_code(spec: SweepSpec) -> list[SpecProblem]:
    """Problems with the code a spec names: its data and eval-table callback entry points.

    They are imported in the child process that runs user code (never here): each must
    resolve to an object defined in the module it names, and the callback to a Keras callback
    class that takes the options the spec gives it.
    """
    if spec.trial is None:
        return []
    request: dict = {"data": spec.trial.data}
    eval_table = spec.callbacks.eval_table
    if isinstance(eval_table, str):
        eval_table = {"callback": eval_table}
    if isinstance(eval_table, dict):
        request["callback"] = eval_table.get("callback")
        request["callback_options"] = [name for name in eval_table if name != "callback"]
    try:
        answer = ask_child(request)
    except UserCodeError as exc:
        return [SpecProblem(path="trial", message=str(exc))]
    return [SpecProblem(path=p["path"], message=p["message"]) for p in answer["problems"]]


def check_search_space(spec: SweepSpec, max_grid_size: int | None = None) -> list[SpecProblem]:
    """Problems with the space a spec searches (empty when fine); meant for submission time.

    Builds the hypermodel (in the child process that runs user code) when the spec relies on
    `build(hp)`, and checks the spec's other entry points there too. A grid over the whole
    space, `build(hp)`'s hyperparameters included, may have at most `max_grid_size`
    combinations.
    """
    problems = check_trial_code(spec)
    if problems or _defines_own_space(spec):
        return problems
    try:
        space = build_space(spec)
    except SpaceDiscoveryError as exc:
        return [SpecProblem(path="trial.hypermodel", message=str(exc))]
    if spec.method == "grid":
        problems = [SpecProblem(path="parameters", message=m) for m in space.check_grid()]
        if not problems and max_grid_size is not None:
            problems = grid_size_problems(space.grid_size(), max_grid_size)
        return problems
    return []


__all__ = [
    "GridSearch",
    "RandomSearch",
    "SearchMethod",
    "SearchSpace",
    "SpaceDiscoveryError",
    "StoppingRule",
    "Suggestion",
    "TrialRecord",
    "build_space",
    "check_search_space",
    "make_search_method",
]
