"""The sweep spec: W&B's sweep format plus ktsweep's Keras fields, parsed and checked.

`parse_spec` turns YAML/JSON text or a dict into a `SweepSpec`, or raises `SpecError` listing
every problem with its path in the spec (`parameters.lr.min`) and a sentence a person can act on.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

METHODS = ("grid", "random", "bayes", "hyperband", "tpe")

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
    model_config = ConfigDict(extra="forbid")


class MetricSpec(_Strict):
    name: str
    goal: Literal["minimize", "maximize"] = "minimize"
    target: float | None = None
    impute: Literal["worst", "best", "latest"] | None = None


class ParameterSpec(_Strict):
    """One W&B parameter: a constant, a list of values, a distribution or nested parameters."""

    distribution: str | None = None
    value: Any = None
    values: list[Any] | None = None
    probabilities: list[float] | None = None
    min: int | float | None = None
    max: int | float | None = None
    mu: float | None = None
    sigma: float | None = None
    q: int | float | None = None
    a: float | None = None
    b: float | None = None
    parameters: dict[str, ParameterSpec] | None = None

    def resolved_distribution(self) -> str | None:
        """The distribution W&B would infer for this parameter (None for nested parameters)."""
        if self.distribution:
            return self.distribution
        fields = self.model_fields_set
        if self.parameters is not None:
            return None
        if "value" in fields:
            return "constant"
        if self.values is not None:
            return "categorical_w_probabilities" if self.probabilities else "categorical"
        if self.min is not None and self.max is not None:
            both_int = _is_int(self.min) and _is_int(self.max)
            return "int_uniform" if both_int else "uniform"
        if self.mu is not None or self.sigma is not None:
            return "normal"
        return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class ResourcesSpec(_Strict):
    cpu: float = Field(1, ge=0)
    gpu: float = Field(0, ge=0)
    tpu: float = Field(0, ge=0)
    memory: int | None = Field(None, ge=0)


class FitSpec(BaseModel):
    model_config = ConfigDict(extra="allow")  # passed through to `model.fit`
    epochs: int = Field(1, ge=1)
    batch_size: int | None = Field(None, ge=1)


class TrialSection(_Strict):
    hypermodel: str
    data: str
    fit: FitSpec = FitSpec()
    resources: ResourcesSpec = ResourcesSpec()
    max_retries: int = Field(0, ge=0)
    timeout_s: float | None = Field(None, gt=0)


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

    method: Literal["grid", "random", "bayes", "hyperband", "tpe"]
    metric: MetricSpec | None = None
    parameters: dict[str, ParameterSpec] | None = None
    early_terminate: dict[str, Any] | None = None
    run_cap: int | None = Field(None, ge=1)
    program: str | None = None
    command: list[str] | None = None
    name: str | None = None
    description: str | None = None
    project: str | None = None
    entity: str | None = None
    # ktsweep's own fields.
    parallelism: int = Field(1, ge=1)
    seed: int | None = None
    trial: TrialSection | None = None
    wandb: WandbSection = WandbSection()
    callbacks: CallbacksSection = CallbacksSection()


_TOP_LEVEL_FIELDS = ", ".join(SweepSpec.model_fields)


def load_spec_text(text: str | bytes) -> Any:
    """Parse YAML or JSON text (JSON is YAML) into plain data, or raise `SpecError`."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = SpecProblem(path="", message=f"the spec is not valid YAML/JSON: {exc}")
        raise SpecError([problem]) from None


def parse_spec(source: str | bytes | dict[str, Any]) -> SweepSpec:
    """Validate a spec (text or dict) and return it, or raise `SpecError` with every problem."""
    data = load_spec_text(source) if isinstance(source, (str, bytes)) else source
    if not isinstance(data, dict):
        raise SpecError(
            [SpecProblem(path="", message="the spec must be a mapping of fields (YAML or JSON).")]
        )
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError([_problem_from_pydantic(err) for err in exc.errors()]) from None
    problems = check_spec(spec)
    if problems:
        raise SpecError(problems)
    return spec


def _problem_from_pydantic(error: dict[str, Any]) -> SpecProblem:
    path = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        field = error["loc"][-1]
        if len(error["loc"]) == 1:
            message = f"unknown field '{field}'; a sweep spec accepts: {_TOP_LEVEL_FIELDS}."
        else:
            message = f"unknown field '{field}'; remove it or check its spelling."
    elif error["type"] == "missing":
        message = "this field is required."
    else:
        message = f"{error['msg']} (got {json.dumps(error.get('input'), default=str)[:80]})."
    return SpecProblem(path=path, message=message)


def check_spec(spec: SweepSpec) -> list[SpecProblem]:
    """Rules that span fields; returns every problem found (empty when the spec is fine)."""
    problems: list[SpecProblem] = []
    if spec.method not in SUPPORTED_METHODS:
        problems.append(
            SpecProblem(
                path="method",
                message=f"method '{spec.method}' is not available in this version; "
                f"use one of: {', '.join(SUPPORTED_METHODS)}.",
            )
        )
    if spec.trial is None and spec.program is None:
        problems.append(
            SpecProblem(
                path="trial",
                message="say how to run a trial: a `trial:` section with `hypermodel` and "
                "`data` entry points ('module:function').",
            )
        )
    if spec.program is not None and spec.trial is None:
        problems.append(
            SpecProblem(
                path="program",
                message="`program` sweeps are not available in this version; add a `trial:` "
                "section with `hypermodel` and `data` entry points instead.",
            )
        )
    if spec.trial is not None:
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
    if spec.metric is None:
        problems.append(
            SpecProblem(
                path="metric",
                message="name the metric to optimise, e.g. "
                "`metric: {name: val_accuracy, goal: maximize}`.",
            )
        )
    if not spec.parameters:
        problems.append(
            SpecProblem(
                path="parameters",
                message="give at least one parameter to search, e.g. "
                "`parameters: {units: {values: [32, 64]}}`.",
            )
        )
    else:
        for name, parameter in spec.parameters.items():
            problems.extend(check_parameter(f"parameters.{name}", parameter, spec.method))
    if spec.run_cap is None and spec.method != "grid":
        problems.append(
            SpecProblem(
                path="run_cap",
                message=f"method '{spec.method}' never runs out of trials; set `run_cap` "
                "to the most trials to run.",
            )
        )
    return problems


_NEEDS_MIN_MAX = {
    "int_uniform",
    "uniform",
    "log_uniform",
    "log_uniform_values",
    "inv_log_uniform",
    "inv_log_uniform_values",
    "q_uniform",
    "q_log_uniform",
    "q_log_uniform_values",
}
_POSITIVE_BOUNDS = {"log_uniform_values", "inv_log_uniform_values", "q_log_uniform_values"}


def check_parameter(path: str, parameter: ParameterSpec, method: str) -> list[SpecProblem]:
    """Problems with one parameter (and its nested parameters)."""
    problems: list[SpecProblem] = []
    if parameter.parameters is not None:
        for name, child in parameter.parameters.items():
            problems.extend(check_parameter(f"{path}.parameters.{name}", child, method))
        return problems
    distribution = parameter.resolved_distribution()
    if distribution is None:
        return [
            SpecProblem(
                path=path,
                message="give `value`, `values`, `min` and `max`, or a `distribution` "
                "with its arguments.",
            )
        ]
    if distribution not in DISTRIBUTIONS:
        return [
            SpecProblem(
                path=f"{path}.distribution",
                message=f"unknown distribution '{distribution}'; use one of: "
                f"{', '.join(DISTRIBUTIONS)}.",
            )
        ]
    if distribution in ("categorical", "categorical_w_probabilities") and not parameter.values:
        problems.append(SpecProblem(path=f"{path}.values", message="list at least one value."))
    if distribution == "categorical_w_probabilities":
        probabilities = parameter.probabilities or []
        if len(probabilities) != len(parameter.values or []):
            problems.append(
                SpecProblem(
                    path=f"{path}.probabilities",
                    message="give one probability per value.",
                )
            )
        elif any(p < 0 for p in probabilities) or not math.isclose(sum(probabilities), 1.0):
            problems.append(
                SpecProblem(
                    path=f"{path}.probabilities",
                    message="probabilities must be non-negative and sum to 1.",
                )
            )
    if distribution in _NEEDS_MIN_MAX:
        for bound in ("min", "max"):
            if getattr(parameter, bound) is None:
                problems.append(
                    SpecProblem(
                        path=f"{path}.{bound}",
                        message=f"distribution '{distribution}' needs `{bound}`.",
                    )
                )
        if parameter.min is not None and parameter.max is not None:
            if parameter.min > parameter.max:
                problems.append(
                    SpecProblem(
                        path=f"{path}.min",
                        message=f"min ({parameter.min:g}) is greater than max "
                        f"({parameter.max:g}); swap them.",
                    )
                )
            if distribution in _POSITIVE_BOUNDS and parameter.min <= 0:
                problems.append(
                    SpecProblem(
                        path=f"{path}.min",
                        message=f"distribution '{distribution}' takes values on a log scale; "
                        "min must be greater than 0.",
                    )
                )
        if distribution == "int_uniform":
            for bound in ("min", "max"):
                value = getattr(parameter, bound)
                if value is not None and not float(value).is_integer():
                    problems.append(
                        SpecProblem(
                            path=f"{path}.{bound}",
                            message=f"int_uniform needs whole numbers; got {value}.",
                        )
                    )
    if distribution.startswith("q_") and parameter.q is not None and parameter.q <= 0:
        problems.append(SpecProblem(path=f"{path}.q", message="q must be greater than 0."))
    if parameter.sigma is not None and parameter.sigma <= 0:
        problems.append(SpecProblem(path=f"{path}.sigma", message="sigma must be greater than 0."))
    for shape in ("a", "b"):
        value = getattr(parameter, shape)
        if value is not None and value <= 0:
            problems.append(
                SpecProblem(path=f"{path}.{shape}", message=f"{shape} must be greater than 0.")
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
