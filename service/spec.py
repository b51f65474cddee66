"""The sweep spec: W&B's sweep format plus ktsweep's Keras fields, parsed and checked.

`parse_spec` turns YAML/JSON text or a dict into a `SweepSpec`, or raises `SpecError` listing
every problem with its path in the spec (`parameters.lr.min`) and a sentence a person can act on.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

METHODS = ("grid", "random", "bayes", "hyperband", "tpe", "custom")
# Methods whose suggestions never depend on results: W&B runs them without a `metric`.
METHODS_WITHOUT_METRIC = ("grid", "random")

DISTRIBUTIONS = (
    "constant",
    "categorical",
    "categorical_w_probabilities",
    "int_uniform",
    "uniform",
    "log_uniform",
    "log_uniform_values",
    "inv_log_uniform",
    "inv_log_uniform_values",
    "q_uniform",
    "q_log_uniform",
    "q_log_uniform_values",
    "normal",
    "q_normal",
    "log_normal",
    "q_log_normal",
    "beta",
    "q_beta",
)

# The fields each distribution takes (besides `distribution`), as in W&B's sweep schema; a
# parameter with any other field matches no distribution and W&B rejects it.
DISTRIBUTION_FIELDS: dict[str, tuple[str, ...]] = {
    "constant": ("value",),
    "categorical": ("values",),
    "categorical_w_probabilities": ("values", "probabilities"),
    "int_uniform": ("min", "max"),
    "uniform": ("min", "max"),
    "log_uniform": ("min", "max"),
    "log_uniform_values": ("min", "max"),
    "inv_log_uniform": ("min", "max"),
    "inv_log_uniform_values": ("min", "max"),
    "q_uniform": ("min", "max", "q"),
    "q_log_uniform": ("min", "max", "q"),
    "q_log_uniform_values": ("min", "max", "q"),
    "normal": ("mu", "sigma"),
    "q_normal": ("mu", "sigma", "q"),
    "log_normal": ("mu", "sigma"),
    "q_log_normal": ("mu", "sigma", "q"),
    "beta": ("a", "b"),
    "q_beta": ("a", "b", "q"),
}
_REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "constant": ("value",),
    "categorical": ("values",),
    "categorical_w_probabilities": ("values", "probabilities"),
    **{name: ("min", "max") for name, fields in DISTRIBUTION_FIELDS.items() if "min" in fields},
}
_PARAMETER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")

_ENTRY_POINT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")

# Limits on what a spec may hold (SECURITY.md lists them with the settings that change some).
MAX_SPEC_DEPTH = 32  # KTSWEEP_MAX_SPEC_DEPTH
MAX_SPEC_NODES = 100_000  # KTSWEEP_MAX_SPEC_NODES
MAX_TEXT_CHARS = 10_000  # any one string in a spec
MAX_NAME_CHARS = 200  # a sweep's `name` (its database column)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # any integer in a spec
INT32_MAX = 2**31 - 1  # epochs and steps: the database's integer columns
MAX_RUN_CAP = 1_000_000
MAX_PARALLELISM = 10_000
MAX_SEED = 2**32 - 1  # NumPy's seeds, which the model-based methods pass it to
MAX_PRIOR_SWEEPS = 10  # earlier sweeps one spec may warm-start from (`prior_sweeps`)
# A sweep id as `ktsweep.service.sweeps` writes it (the database column holds 32 characters).
_SWEEP_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
# Methods that learn from earlier sweeps' trials (random takes them too, and needs none).
METHODS_WITH_PRIOR_SWEEPS = ("random", "bayes", "tpe", "custom")
_MAX_PROBLEMS = 20  # a spec with thousands of bad values gets the first ones


class SpecProblem(BaseModel):
    """One problem in a submitted spec."""

    path: str
    message: str


class SpecError(ValueError):
    """A sweep spec that cannot be accepted; `problems` lists every reason."""

    def __init__(self, problems: list[SpecProblem]):
        self.problems = problems
        super().__init__("; ".join(f"{p.path or '<spec>'}: {p.message}" for p in problems))


class _Strict(BaseModel):
    # NaN and infinity compare false with everything: a bound or setting holding one is an error.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class MetricSpec(_Strict):
    """The metric a sweep optimises (W&B's `metric` section)."""

    name: str
    goal: Literal["minimize", "maximize"] = "minimize"
    target: float | None = None
    impute: Literal["worst", "best", "latest"] = "worst"
    impute_while_running: Literal["worst", "best", "latest", "false"] = "false"

    @field_validator("impute_while_running", mode="before")
    @classmethod
    def _false_as_written_in_yaml(cls, value: Any) -> Any:
        # W&B's value is the string "false"; YAML reads an unquoted `false` as a boolean.
        return "false" if value is False else value


class ObjectiveSpec(_Strict):
    """One objective of a multi-objective sweep (an item of W&B's `metrics` list).

    `target`: the sweep starts no more trials once one trial meets every objective's target
    (each objective that has one).
    """

    name: str
    goal: Literal["minimize", "maximize"] = "minimize"
    target: float | None = None


SCHEDULER_ENGINES = ("optuna", "ax", "wandb")


class SchedulerSpec(_Strict):
    """W&B's `scheduler` section of a `method: custom` sweep: the engine that picks trials.

    `engine: optuna` runs here: an Optuna study whose directions are the sweep's goals, with
    multi-objective TPE for several objectives and a Gaussian process for one (TPE without
    PyTorch), over the spec's `parameters` (see `OptunaStudySearch`). `engine: ax`
    runs Ax's client when `ktsweep[ax]` is installed. `source`, `optimizer` and `search_space`
    name user code (a Python file inside an allowed program folder, and functions in it): the
    controller never imports it; it runs in a child process of the sweep's own, without the
    controller's secrets and with a time limit on each call (`user_code_search`).
    """

    engine: Literal["optuna", "ax", "wandb"]
    source: str | None = None
    optimizer: str | None = None
    search_space: str | None = None


class ParameterSpec(_Strict):
    """One W&B parameter: a constant, a list of values, a distribution or nested parameters."""

    distribution: str | None = None
    value: Any = None
    values: list[Any] | None = None
    probabilities: list[float] | None = None
    min: int | float | None = None
    max: int | float | None = None
    mu: float = 0.0
    sigma: float = 1.0
    q: int | float = 1.0
    a: float = 1.0
    b: float = 1.0
    parameters: dict[str, ParameterSpec] | None = None

    def given_fields(self) -> set[str]:
        """The fields the spec gave (defaults left out)."""
        return set(self.model_fields_set)

    def resolved_distribution(self) -> str | None:
        """The distribution W&B infers for this parameter, or None (nested, or no match).

        Without `distribution`, W&B takes the first of its parameter schemas the fields fit:
        `values` alone is categorical, `values` + `probabilities` is
        categorical_w_probabilities, integer `min`/`max` is int_uniform, other numeric
        `min`/`max` is uniform, `value` alone is constant. Every other distribution must be named.
        """
        fields = self.given_fields() - {"distribution"}
        if self.distribution:
            return self.distribution
        if "parameters" in fields:
            return None
        if fields == {"values"}:
            return "categorical"
        if fields == {"values", "probabilities"}:
            return "categorical_w_probabilities"
        if fields == {"min", "max"}:
            return "int_uniform" if _is_int(self.min) and _is_int(self.max) else "uniform"
        if fields == {"value"}:
            return "constant"
        return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class HyperbandStopping(_Strict):
    """W&B's hyperband early termination: stop trials below the top 1/eta at each band."""

    type: Literal["hyperband"]
    min_iter: int | None = Field(None, ge=1, le=INT32_MAX)
    max_iter: int | None = Field(None, ge=1, le=INT32_MAX)
    s: int | None = Field(None, ge=1, le=1000)
    eta: float = Field(3, gt=1)
    strict: bool = True

    def bands(self) -> list[int]:
        """The reported steps at which trials are judged, smallest first (as W&B computes them)."""
        if self.max_iter is not None and self.s is not None:
            bands, band = [], float(self.max_iter)
            for _ in range(self.s):
                band /= self.eta
                if band < 1:
                    break
                bands.append(int(band))
            return sorted(bands)
        if self.min_iter is not None:
            # W&B lists 100 bands; a band past any trial's length never applies.
            return [int(self.min_iter * self.eta**k) for k in range(100) if self.eta**k < 1e12]
        return []


class AshaStopping(_Strict):
    """Asynchronous successive halving (optuna's `SuccessiveHalvingPruner`)."""

    type: Literal["asha"]
    min_iter: int = Field(1, ge=1)
    eta: int = Field(3, ge=2)
    min_early_stopping_rate: int = Field(0, ge=0)


class MedianStopping(_Strict):
    """The median stopping rule (optuna's `MedianPruner`)."""

    type: Literal["median"]
    n_startup_trials: int = Field(5, ge=0)
    n_warmup_steps: int = Field(0, ge=0)
    interval_steps: int = Field(1, ge=1)
    n_min_trials: int = Field(1, ge=1)


EarlyTerminateSpec = Annotated[
    HyperbandStopping | AshaStopping | MedianStopping, Field(discriminator="type")
]
_STOPPING_TYPES = ("hyperband", "asha", "median")


class ResourcesSpec(_Strict):
    cpu: float = Field(1, ge=0)
    gpu: float = Field(0, ge=0)
    tpu: float = Field(0, ge=0)
    memory: int | None = Field(None, ge=0)


class FitSpec(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)  # passed to `model.fit`
    epochs: int = Field(1, ge=1, le=INT32_MAX)
    batch_size: int | None = Field(None, ge=1, le=INT32_MAX)


class TrialSection(_Strict):
    # Entry points of a Keras trial; a `program` sweep runs its script instead.
    hypermodel: str | None = None
    data: str | None = None
    fit: FitSpec = FitSpec()
    resources: ResourcesSpec = ResourcesSpec()
    max_retries: int = Field(0, ge=0, le=1000)
    timeout_s: float | None = Field(None, gt=0)


class HyperbandSection(_Strict):
    """Options of method `hyperband` (Keras Tuner's Hyperband; the budget is `trial.fit.epochs`).

    `factor`: each round keeps the best `1/factor` of the previous round's trials and trains
    them `factor` times as many epochs (Keras Tuner's `factor`, default 3).
    """

    factor: int = Field(3, ge=2)


class WandbSection(_Strict):
    project: str | None = None
    entity: str | None = None
    mode: Literal["online", "offline", "disabled"] | None = None
    tags: list[str] | None = None


class CallbacksSection(_Strict):
    metrics_logger: dict[str, Any] | None = Field(default_factory=lambda: {"log_freq": "epoch"})
    checkpoint: dict[str, Any] | None = None
    eval_table: str | dict[str, Any] | None = None
    legacy: bool = False


class SweepSpec(_Strict):
    """A sweep: what to search, how to judge it, and how to run each trial."""

    method: Literal["grid", "random", "bayes", "hyperband", "tpe", "custom"]
    metric: MetricSpec | None = None
    metrics: list[ObjectiveSpec] | None = None  # several objectives (needs `method: custom`)
    scheduler: SchedulerSpec | None = None  # the engine of a `method: custom` sweep
    parameters: dict[str, ParameterSpec] | None = None
    early_terminate: EarlyTerminateSpec | None = None
    run_cap: int | None = Field(None, ge=1, le=MAX_RUN_CAP)
    program: str | None = None
    command: list[Any] | None = None
    name: str | None = Field(None, max_length=MAX_NAME_CHARS)
    description: str | None = Field(None, max_length=MAX_TEXT_CHARS)
    project: str | None = None
    entity: str | None = None
    # W&B fields that change nothing here (which controller runs the sweep, the config version).
    controller: dict[str, Any] | None = None
    apiVersion: str | None = None  # noqa: N815 - W&B's name
    kind: Literal["sweep"] | None = None
    # ktsweep's own fields.
    working_dir: str | None = None  # where a `program` lives on the workers
    parallelism: int = Field(1, ge=1, le=MAX_PARALLELISM)
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    hyperband: HyperbandSection | None = None
    # Earlier sweeps whose completed trials the search method learns first (W&B's `prior_runs`).
    prior_sweeps: list[Any] | None = None
    trial: TrialSection | None = None
    wandb: WandbSection = WandbSection()
    callbacks: CallbacksSection = CallbacksSection()


_TOP_LEVEL_FIELDS = ", ".join(SweepSpec.model_fields)


class SpecTooLargeError(yaml.YAMLError):
    """A YAML document nested too deeply, or too large once its aliases are expanded."""

    def __init__(self, message: str, mark: Any = None):
        where = f" (line {mark.line + 1})" if mark is not None else ""
        super().__init__(message + where)


class SpecLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses documents which would cost far more than their size.

    A few hundred bytes of YAML can hold aliases (`*name`) that expand to billions of values (a
    "billion laughs"), or brackets nested thousands deep that exhaust the stack. This loader
    counts every value as it would be once expanded, and refuses a document nested deeper than
    `max_depth` levels, holding more than `max_nodes` values, or with an alias inside the node
    it names (a structure that contains itself). Anchors and aliases within the limits, merge
    keys (`<<: *defaults`) included, keep working.

    Args:
        stream: YAML (or JSON) text.
        max_depth: Deepest nesting of mappings and lists. Default `MAX_SPEC_DEPTH` (32).
        max_nodes: Most values once aliases are expanded. Default `MAX_SPEC_NODES` (100000).

    Example:

    ```python
    loader = SpecLoader("a: &a [1, 2]\nb: *a\n")
    data = loader.get_single_data()
    ```
    """

    def __init__(
        self, stream: str | bytes, max_depth: int = MAX_SPEC_DEPTH, max_nodes: int = MAX_SPEC_NODES
    ):
        super().__init__(stream)
        self.max_depth = max_depth
        self.max_nodes = max_nodes
        self._depth = 0
        self._expanded = 0
        self._aliases = 0
        self._shapes: dict[int, tuple[int, int]] = {}  # id(node) -> (values expanded, height)

    def compose_node(self, parent, index):
        mark = self.peek_event().start_mark
        if self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)
            shape = self._shapes.get(id(node))
            if shape is None:
                raise SpecTooLargeError(
                    "an alias (*name) refers to the node that contains it, which would never "
                    "end; write the values out instead",
                    mark,
                )
            self._aliases += 1
            self._add(shape, mark)
            return node
        self._depth += 1
        try:
            if self._depth > self.max_depth:
                raise SpecTooLargeError(
                    f"the spec is nested too deeply: more than {self.max_depth} levels of "
                    "mappings and lists (KTSWEEP_MAX_SPEC_DEPTH); flatten it",
                    mark,
                )
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._shapes[id(node)] = _shape(node, self._shapes)
        self._add((1, 0), mark)
        return node

    def _add(self, shape: tuple[int, int], mark: Any) -> None:
        values, height = shape
        self._expanded += values
        if self._depth + height > self.max_depth:
            raise SpecTooLargeError(
                f"the spec is nested too deeply once its aliases (*name) are expanded: more "
                f"than {self.max_depth} levels (KTSWEEP_MAX_SPEC_DEPTH); flatten it",
                mark,
            )
        if self._expanded > self.max_nodes:
            expanded = " once its aliases (*name) are expanded" if self._aliases else ""
            raise SpecTooLargeError(
                f"the spec holds more than {self.max_nodes} values{expanded} "
                "(KTSWEEP_MAX_SPEC_NODES); write it with fewer values",
                mark,
            )


def _shape(node: yaml.Node, shapes: dict[int, tuple[int, int]]) -> tuple[int, int]:
    """(values once expanded, height) of a node whose children are all known."""
    if isinstance(node, yaml.ScalarNode):
        return 1, 1
    if isinstance(node, yaml.MappingNode):
        children = [child for pair in node.value for child in pair]
    else:
        children = node.value
    known = [shapes[id(child)] for child in children]
    return 1 + sum(v for v, _ in known), 1 + max((h for _, h in known), default=0)


def load_spec_text(
    text: str | bytes, max_depth: int = MAX_SPEC_DEPTH, max_nodes: int = MAX_SPEC_NODES
) -> Any:
    """Parse YAML or JSON text (JSON is YAML) into plain data, or raise `SpecError`.

    Documents nested deeper than `max_depth`, or larger than `max_nodes` values once YAML
    aliases are expanded, are refused (see `SpecLoader`).
    """
    loader = None
    try:
        # The reader checks the text as the loader is made: a NUL character raises here.
        loader = SpecLoader(text, max_depth=max_depth, max_nodes=max_nodes)
        return loader.get_single_data()
    except SpecTooLargeError as exc:
        raise SpecError([SpecProblem(path="", message=f"{exc}.")]) from None
    except (yaml.YAMLError, ValueError, OverflowError, RecursionError) as exc:
        # ValueError: a value YAML reads but Python cannot hold (an integer of 5000 digits).
        problem = SpecProblem(path="", message=f"the spec is not valid YAML/JSON: {exc}")
        raise SpecError([problem]) from None
    finally:
        if loader is not None:
            loader.dispose()


def check_values(data: Any, max_depth: int = MAX_SPEC_DEPTH) -> list[SpecProblem]:
    """Values no spec field can hold, anywhere in `data`, each with its path.

    A spec holds text, numbers, booleans, null, lists and mappings, as JSON does: a NaN or
    infinite number, an integer beyond 64 bits, a string longer than `MAX_TEXT_CHARS`, nesting
    deeper than `max_depth`, or another YAML type (a date, bytes, a set) is a problem. Walks
    without recursion, so any depth of a dict given by a caller is safe.
    """
    problems: list[SpecProblem] = []
    stack: list[tuple[str, Any, int]] = [("", data, 0)]
    while stack and len(problems) < _MAX_PROBLEMS:
        path, value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth >= max_depth:
                message = (
                    f"nested too deeply: more than {max_depth} levels of mappings and lists "
                    "(KTSWEEP_MAX_SPEC_DEPTH); flatten it."
                )
                problems.append(SpecProblem(path=path, message=message))
                continue
            if isinstance(value, dict):
                items = []
                for key, item in value.items():
                    problem = _scalar_problem(path, key, is_key=True)
                    if problem is not None:
                        problems.append(problem)
                    items.append((f"{path}.{key}" if path else str(key), item))
            else:
                items = [(f"{path}.{i}" if path else str(i), item) for i, item in enumerate(value)]
            stack.extend((child, item, depth + 1) for child, item in reversed(items))
            continue
        problem = _scalar_problem(path, value)
        if problem is not None:
            problems.append(problem)
    return problems


def _scalar_problem(path: str, value: Any, is_key: bool = False) -> SpecProblem | None:
    what = "a key" if is_key else "this value"
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        if INT64_MIN <= value <= INT64_MAX:
            return None
        message = (
            f"{what} is out of range: integers must be between {INT64_MIN} and {INT64_MAX} "
            "(64 bits)."
        )
    elif isinstance(value, float):
        if math.isfinite(value):
            return None
        message = f"{what} is {value}, not a finite number; give a number."
    elif isinstance(value, str):
        if len(value) <= MAX_TEXT_CHARS:
            return None
        message = (
            f"{what} is {len(value)} characters long; text in a spec may be at most "
            f"{MAX_TEXT_CHARS} characters."
        )
    else:
        message = (
            f"{what} is a {type(value).__name__}; a spec holds text, numbers, true/false, "
            "null, lists and mappings. Quote it to make it text."
        )
    return SpecProblem(path=path, message=message)


def parse_spec(source: str | bytes | dict[str, Any], max_depth: int = MAX_SPEC_DEPTH) -> SweepSpec:
    """Validate a spec (text or dict) and return it, or raise `SpecError` with every problem.

    `max_depth`: the deepest nesting accepted (KTSWEEP_MAX_SPEC_DEPTH, default 32).
    """
    if isinstance(source, (str, bytes)):
        data = load_spec_text(source, max_depth=max_depth)
    else:
        data = source
    if not isinstance(data, dict):
        raise SpecError(
            [SpecProblem(path="", message="the spec must be a mapping of fields (YAML or JSON).")]
        )
    problems = check_values(data, max_depth)
    if problems:
        raise SpecError(problems)
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError([_problem_from_pydantic(err) for err in exc.errors()]) from None
    problems = check_spec(spec)
    if problems:
        raise SpecError(problems)
    return spec


_WANDB_ONLY_FIELDS = {
    "job": "W&B Launch jobs (`job`) are not supported; add a `trial:` section instead.",
    "image_uri": "W&B Launch images (`image_uri`) are not supported; add a `trial:` section.",
}


def _problem_from_pydantic(error: dict[str, Any]) -> SpecProblem:
    loc = list(error["loc"])
    # A tagged union puts its tag in the path (`early_terminate.asha.eta`); users never wrote it.
    if len(loc) > 1 and loc[0] == "early_terminate" and loc[1] in _STOPPING_TYPES:
        del loc[1]
    path = ".".join(str(part) for part in loc)
    if error["type"] == "extra_forbidden":
        field = loc[-1]
        if len(loc) == 1 and field in _WANDB_ONLY_FIELDS:
            message = _WANDB_ONLY_FIELDS[field]
        elif len(loc) == 1:
            message = f"unknown field '{field}'; a sweep spec accepts: {_TOP_LEVEL_FIELDS}."
        elif loc[0] == "early_terminate":
            message = f"unknown field '{field}' for this early_terminate type; remove it."
        else:
            message = f"unknown field '{field}'; remove it or check its spelling."
    elif error["type"] == "missing":
        message = "this field is required."
    elif error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        path = f"{path}.type" if not path.endswith("type") else path
        message = f"early_terminate `type` must be one of: {', '.join(_STOPPING_TYPES)}."
    elif loc == ["method"]:
        message = (
            f"unknown method {json.dumps(error.get('input'))}; use one of: {', '.join(METHODS)}."
        )
    elif loc == ["scheduler", "engine"]:
        message = (
            f"unknown engine {json.dumps(error.get('input'))}; use `engine: optuna` (it runs "
            f"here). W&B's engines are: {', '.join(SCHEDULER_ENGINES)}."
        )
    else:
        message = f"{error['msg']} (got {json.dumps(error.get('input'), default=str)[:80]})."
    return SpecProblem(path=path, message=message)


def is_program_sweep(spec: SweepSpec) -> bool:
    """Trials run the `program` script: there is one and no Keras `trial.hypermodel`.

    A W&B config keeps its `program` when a `trial:` section is added; the hypermodel then wins.
    """
    return spec.program is not None and (spec.trial is None or spec.trial.hypermodel is None)


def _check_program_sweep(spec: SweepSpec) -> list[SpecProblem]:
    """A `program` sweep runs a W&B training script instead of a Keras hypermodel."""
    problems = []
    if spec.trial is not None and spec.trial.data is not None:
        problems.append(
            SpecProblem(
                path="trial.data",
                message="a `program` sweep loads its own data; remove `trial.data`, or add "
                "`trial.hypermodel` to run a Keras trial instead of the program.",
            )
        )
    if spec.method == "hyperband":
        problems.append(
            SpecProblem(
                path="method",
                message="method 'hyperband' continues Keras trials from checkpoints and needs "
                "`trial.hypermodel`; for a `program` sweep use `early_terminate: {type: "
                "hyperband}` with method random, bayes or tpe.",
            )
        )
    if spec.parameters is None:
        problems.append(
            SpecProblem(
                path="parameters",
                message="a `program` sweep needs `parameters` (there is no `build(hp)` to "
                "discover them from).",
            )
        )
    return problems


def check_spec(spec: SweepSpec) -> list[SpecProblem]:
    """Rules that span fields; returns every problem found (empty when the spec is fine)."""
    problems: list[SpecProblem] = []
    if is_program_sweep(spec):
        problems.extend(_check_program_sweep(spec))
    elif spec.trial is None or spec.trial.hypermodel is None or spec.trial.data is None:
        problems.append(
            SpecProblem(
                path="trial" if spec.trial is None else "trial.hypermodel",
                message="say how to run a trial: a `trial:` section with `hypermodel` and "
                "`data` entry points ('module:function'), or a `program` (a W&B training "
                "script).",
            )
        )
    else:
        for field in ("hypermodel", "data"):
            value = getattr(spec.trial, field)
            if not _ENTRY_POINT.match(value):
                problems.append(
                    SpecProblem(
                        path=f"trial.{field}",
                        message=f"'{value}' is not an entry point; write it as "
                        "'package.module:function'.",
                    )
                )
    problems.extend(check_objectives(spec))
    # W&B runs grid and random sweeps without a metric (nothing to rank); every other method,
    # and early termination, compares trials by it.
    if (
        spec.metric is None
        and spec.metrics is None
        and (spec.method not in METHODS_WITHOUT_METRIC or spec.early_terminate is not None)
    ):
        problems.append(
            SpecProblem(
                path="metric",
                message="name the metric to optimise, e.g. "
                "`metric: {name: val_accuracy, goal: maximize}`.",
            )
        )
    if spec.parameters is not None:
        problems.extend(check_parameters("parameters", spec.parameters, spec.method))
    if spec.method == "hyperband" and spec.trial is not None and spec.trial.fit.epochs < 2:
        problems.append(
            SpecProblem(
                path="trial.fit.epochs",
                message="method 'hyperband' gives trials budgets up to `fit.epochs`; set it "
                "to the most epochs one trial may train (at least 2, e.g. 27).",
            )
        )
    if isinstance(spec.early_terminate, HyperbandStopping):
        problems.extend(_check_hyperband_stopping(spec.early_terminate))
    if spec.hyperband is not None:
        problems.extend(_check_hyperband_method(spec))
    if spec.prior_sweeps is not None:
        problems.extend(check_prior_sweeps(spec))
    return problems


def check_prior_sweeps(spec: SweepSpec) -> list[SpecProblem]:
    """The shape of `prior_sweeps`: at most `MAX_PRIOR_SWEEPS` (10) distinct sweep ids, for a
    method that learns from trials.

    Whether each sweep exists is checked against the database at submission
    (`ktsweep.service.search.warm_start.missing_prior_sweeps`), not here.
    """
    problems: list[SpecProblem] = []
    ids = spec.prior_sweeps or []
    if len(ids) > MAX_PRIOR_SWEEPS:
        problems.append(
            SpecProblem(
                path="prior_sweeps",
                message=f"`prior_sweeps` names {len(ids)} sweeps; a sweep warm-starts from at "
                f"most {MAX_PRIOR_SWEEPS}: keep the ones closest to this sweep's space.",
            )
        )
        return problems
    seen: set[str] = set()
    for index, sweep_id in enumerate(ids):
        if not isinstance(sweep_id, str) or not _SWEEP_ID.match(sweep_id):
            problems.append(
                SpecProblem(
                    path=f"prior_sweeps.{index}",
                    message=f"{json.dumps(sweep_id, default=str)[:80]} is not a sweep id; give "
                    "the id of an earlier sweep of this controller (as `GET /sweeps` lists "
                    "it, e.g. '3f2a9c1b7d4e').",
                )
            )
        elif sweep_id in seen:
            problems.append(
                SpecProblem(
                    path=f"prior_sweeps.{index}",
                    message=f"sweep '{sweep_id}' is listed twice; name each earlier sweep once.",
                )
            )
        else:
            seen.add(sweep_id)
    if spec.method not in METHODS_WITH_PRIOR_SWEEPS:
        problems.append(
            SpecProblem(
                path="prior_sweeps",
                message=f"method '{spec.method}' does not learn from earlier trials; warm "
                f"starts work with {', '.join(METHODS_WITH_PRIOR_SWEEPS[1:])} (and random, "
                "which needs none): change `method`, or remove `prior_sweeps`.",
            )
        )
    return problems


def objectives_of(spec: SweepSpec) -> list[ObjectiveSpec]:
    """What a sweep optimises: its `metrics`, or its one `metric` (empty for neither)."""
    if spec.metrics is not None:
        return list(spec.metrics)
    if spec.metric is not None:
        metric = spec.metric
        return [ObjectiveSpec(name=metric.name, goal=metric.goal, target=metric.target)]
    return []


def is_multi_objective(spec: SweepSpec) -> bool:
    """Whether a sweep optimises several objectives (W&B's `metrics`)."""
    return spec.metrics is not None


def check_objectives(spec: SweepSpec) -> list[SpecProblem]:
    """W&B's rules for `metrics`, `method: custom` and `scheduler`.

    `metrics` lists at least two objectives, is not combined with `metric`, and needs
    `method: custom`; `method: custom` needs a `scheduler`, and a `scheduler` needs
    `method: custom` and excludes `early_terminate`. Of the engines, `optuna` runs here; `ax`
    needs the `ax` extra; `wandb` (W&B's hosted scheduler) does not run outside W&B.
    """
    problems: list[SpecProblem] = []
    if spec.metrics is not None:
        problems.extend(_check_metrics_list(spec))
    if spec.method == "custom" and spec.scheduler is None:
        problems.append(
            SpecProblem(
                path="scheduler",
                message="method 'custom' takes its trials from a `scheduler`; add "
                "`scheduler: {engine: optuna}`.",
            )
        )
    if spec.scheduler is not None:
        problems.extend(_check_scheduler(spec))
    return problems


def _check_metrics_list(spec: SweepSpec) -> list[SpecProblem]:
    problems: list[SpecProblem] = []
    if spec.metric is not None:
        problems.append(
            SpecProblem(
                path="metrics",
                message="give either `metric` (one objective) or `metrics` (several), not "
                "both; move `metric` into the `metrics` list.",
            )
        )
    if len(spec.metrics) < 2:
        problems.append(
            SpecProblem(
                path="metrics",
                message=f"`metrics` lists at least two objectives (got {len(spec.metrics)}); "
                "for one objective write `metric: {name: ..., goal: ...}` instead.",
            )
        )
    seen: set[str] = set()
    for index, objective in enumerate(spec.metrics):
        if objective.name in seen:
            problems.append(
                SpecProblem(
                    path=f"metrics.{index}.name",
                    message=f"'{objective.name}' is listed twice; each objective names a "
                    "different metric.",
                )
            )
        seen.add(objective.name)
    if spec.method != "custom":
        problems.append(
            SpecProblem(
                path="method",
                message=f"a multi-objective sweep (`metrics`) needs `method: custom` and "
                f"`scheduler: {{engine: optuna}}`, not method '{spec.method}'.",
            )
        )
    return problems


def _check_scheduler(spec: SweepSpec) -> list[SpecProblem]:
    scheduler = spec.scheduler
    problems: list[SpecProblem] = []
    if spec.method != "custom":
        problems.append(
            SpecProblem(
                path="method",
                message=f"a `scheduler` picks the trials itself, so it needs `method: custom`, "
                f"not method '{spec.method}'; set `method: custom` or remove `scheduler`.",
            )
        )
    if spec.early_terminate is not None:
        problems.append(
            SpecProblem(
                path="early_terminate",
                message="a `scheduler` cannot be combined with `early_terminate` (as in W&B); "
                "remove `early_terminate`, or use a `method` such as tpe without a scheduler.",
            )
        )
    if scheduler.engine == "wandb":
        problems.append(
            SpecProblem(
                path="scheduler.engine",
                message="engine 'wandb' is W&B's hosted scheduler, which runs only on W&B's "
                "servers; use `engine: optuna` (it runs here, with the same `metrics`).",
            )
        )
    elif scheduler.engine == "ax" and importlib.util.find_spec("ax") is None:
        problems.append(
            SpecProblem(
                path="scheduler.engine",
                message="engine 'ax' needs the Ax platform: install it with `pip install "
                "'ktsweep[ax]'` on the controller, or use `engine: optuna`.",
            )
        )
    # `source`, `optimizer` and `search_space` are checked against the operator's folders, and
    # imported in a child process, at submission (`user_code_search.check_scheduler_code`).
    return problems


def _check_hyperband_method(spec: SweepSpec) -> list[SpecProblem]:
    """The `hyperband` section: options of method hyperband, with a factor its budget allows."""
    if spec.method != "hyperband":
        return [
            SpecProblem(
                path="hyperband",
                message=f"`hyperband` sets options of method 'hyperband', but the method is "
                f"'{spec.method}'; remove the section, or set `method: hyperband`. (To stop "
                "trials early with another method, use `early_terminate: {type: hyperband}`.)",
            )
        ]
    factor = spec.hyperband.factor
    if spec.trial is not None and 2 <= spec.trial.fit.epochs < factor:
        epochs = spec.trial.fit.epochs
        return [
            SpecProblem(
                path="hyperband.factor",
                message=f"factor ({factor}) is larger than `trial.fit.epochs` ({epochs}), so "
                "no trial would get a smaller budget than another; lower `factor` to at most "
                f"{epochs}, or raise `fit.epochs` (e.g. to {factor**2}).",
            )
        ]
    return []


def _check_hyperband_stopping(config: HyperbandStopping) -> list[SpecProblem]:
    given = config.model_fields_set
    if "min_iter" not in given and not {"max_iter", "s"} <= given:
        return [
            SpecProblem(
                path="early_terminate",
                message="hyperband needs `min_iter` (the first band), or `max_iter` and `s` "
                "(the last band and how many bands below it).",
            )
        ]
    if not config.bands():
        return [
            SpecProblem(
                path="early_terminate",
                message="these settings give no band to judge trials at; increase `s`, "
                "decrease `eta`, or increase `max_iter`.",
            )
        ]
    return []


def check_parameters(
    path: str, parameters: dict[str, ParameterSpec], method: str
) -> list[SpecProblem]:
    """Problems with a `parameters` mapping (top level or nested)."""
    if not parameters:
        return [
            SpecProblem(
                path=path,
                message="give at least one parameter, e.g. `units: {values: [32, 64]}`; or "
                "leave `parameters` out to search the space `build(hp)` declares.",
            )
        ]
    problems: list[SpecProblem] = []
    for name, parameter in parameters.items():
        if not _PARAMETER_NAME.match(name):
            problems.append(
                SpecProblem(
                    path=f"{path}.{name}",
                    message=f"'{name}' is not a valid parameter name; start with a letter or "
                    "'_' and use only letters, digits, '_', '.' and '-'.",
                )
            )
        problems.extend(check_parameter(f"{path}.{name}", parameter, method))
    return problems


def check_parameter(path: str, parameter: ParameterSpec, method: str) -> list[SpecProblem]:
    """Problems with one parameter (and its nested parameters), by W&B's rules."""
    given = parameter.given_fields() - {"distribution"}
    if "parameters" in given:
        if given != {"parameters"} or parameter.distribution is not None:
            extra = sorted(given - {"parameters"} | ({"distribution"} & parameter.given_fields()))
            return [
                SpecProblem(
                    path=path,
                    message=f"a parameter with nested `parameters` takes no other field; "
                    f"remove {', '.join(extra)}.",
                )
            ]
        return check_parameters(f"{path}.parameters", parameter.parameters or {}, method)
    distribution = parameter.resolved_distribution()
    if distribution is None:
        return [_unmatched_parameter(path, given)]
    if distribution not in DISTRIBUTIONS:
        return [
            SpecProblem(
                path=f"{path}.distribution",
                message=f"unknown distribution '{distribution}'; use one of: "
                f"{', '.join(DISTRIBUTIONS)}.",
            )
        ]
    problems: list[SpecProblem] = []
    allowed = set(DISTRIBUTION_FIELDS[distribution])
    for field in sorted(given - allowed):
        problems.append(
            SpecProblem(
                path=f"{path}.{field}",
                message=f"distribution '{distribution}' takes no `{field}`; it takes "
                f"{', '.join(f'`{f}`' for f in DISTRIBUTION_FIELDS[distribution])}.",
            )
        )
    for field in _REQUIRED_FIELDS.get(distribution, ()):
        if field not in given:
            problems.append(
                SpecProblem(
                    path=f"{path}.{field}",
                    message=f"distribution '{distribution}' needs `{field}`.",
                )
            )
    if problems:
        return problems
    problems.extend(_check_values(path, parameter, distribution))
    problems.extend(_check_bounds(path, parameter, distribution))
    given_shape = [f for f in ("q", "sigma", "a", "b") if f in given]
    for field in given_shape:
        if getattr(parameter, field) <= 0:
            problems.append(
                SpecProblem(path=f"{path}.{field}", message=f"{field} must be greater than 0.")
            )
    if method == "grid" and distribution not in ("constant", "categorical", "int_uniform"):
        problems.append(
            SpecProblem(
                path=path,
                message=f"grid search needs a finite set of values, but this parameter is "
                f"'{distribution}'; give `values` instead.",
            )
        )
    return problems


def _unmatched_parameter(path: str, given: set[str]) -> SpecProblem:
    if not given:
        message = "give `value`, `values`, `min` and `max`, or a `distribution` with its arguments."
    elif given & {"mu", "sigma", "a", "b", "q"}:
        message = (
            f"W&B infers no distribution from {', '.join(sorted(given))}; name it with "
            "`distribution:` (e.g. normal, log_normal, beta, q_uniform)."
        )
    elif given in ({"min"}, {"max"}):
        missing = "max" if given == {"min"} else "min"
        return SpecProblem(path=f"{path}.{missing}", message=f"give `{missing}` as well.")
    else:
        message = (
            f"the fields {', '.join(sorted(given))} fit no W&B parameter form; use `value`, "
            "`values` (with `probabilities`), `min`+`max`, or a `distribution` with its "
            "arguments."
        )
    return SpecProblem(path=path, message=message)


def _check_values(path: str, parameter: ParameterSpec, distribution: str) -> list[SpecProblem]:
    if distribution not in ("categorical", "categorical_w_probabilities"):
        return []
    if not parameter.values:
        return [SpecProblem(path=f"{path}.values", message="list at least one value.")]
    if distribution == "categorical_w_probabilities":
        probabilities = parameter.probabilities or []
        if len(probabilities) != len(parameter.values):
            return [
                SpecProblem(
                    path=f"{path}.probabilities",
                    message=f"give one probability per value ({len(parameter.values)} values, "
                    f"{len(probabilities)} probabilities).",
                )
            ]
        if any(p < 0 for p in probabilities) or not math.isclose(
            sum(probabilities), 1.0, abs_tol=1e-6
        ):
            return [
                SpecProblem(
                    path=f"{path}.probabilities",
                    message="probabilities must be non-negative and sum to 1.",
                )
            ]
    return []


def _check_bounds(path: str, parameter: ParameterSpec, distribution: str) -> list[SpecProblem]:
    if "min" not in DISTRIBUTION_FIELDS[distribution]:
        return []
    problems: list[SpecProblem] = []
    low, high = parameter.min, parameter.max
    if distribution == "int_uniform":
        for bound, value in (("min", low), ("max", high)):
            if not _is_int(value):
                problems.append(
                    SpecProblem(
                        path=f"{path}.{bound}",
                        message=f"int_uniform needs whole numbers; got {value}.",
                    )
                )
    if low > high:
        problems.append(
            SpecProblem(
                path=f"{path}.min",
                message=f"min ({low:g}) is greater than max ({high:g}); swap them.",
            )
        )
    elif low == high:
        problems.append(
            SpecProblem(
                path=f"{path}.min",
                message=f"min ({low:g}) equals max; W&B needs min below max. For a constant, "
                "write `value` instead.",
            )
        )
    if distribution.endswith("_values") and low <= 0:
        problems.append(
            SpecProblem(
                path=f"{path}.min",
                message=f"distribution '{distribution}' takes values on a log scale; "
                "min must be greater than 0.",
            )
        )
    return problems
