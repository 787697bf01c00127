"""Domain types: parameter spaces and sets, tasks, batches, jobs and studies.

A `SimulationStudy` is an experimental design with no bundle; `study.bind(bundle_ref)` makes
the `SimJob` that runs it. Ids (`param_id`, `task_id`) are always derived from content, never
passed in, so they cannot disagree with what they name.
"""

from __future__ import annotations

import functools
import math
import re
import secrets
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal

import msgspec

from .canonical import normalize
from .entrypoint import ENTRYPOINT_PATTERN, parse_entrypoint
from .errors import InvalidMessage
from .hashing import param_id as _param_id
from .hashing import task_id as _task_id
from .refs import BUNDLE_REF_PATTERN, parse_bundle_ref
from .seeds import SEED_MAX, derive_seeds

__all__ = [
    "JOB_ID_PATTERN",
    "BundleRefStr",
    "EntrypointStr",
    "JobId",
    "ParameterSet",
    "ParameterSpace",
    "ParameterSpec",
    "Resources",
    "Scalar",
    "SimBatch",
    "SimJob",
    "SimTask",
    "SimulationStudy",
    "new_job_id",
]

Scalar = bool | int | float | str
JOB_ID_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$(?!\n)"  # `(?!\n)`: see entrypoint.py
JobId = Annotated[
    str, msgspec.Meta(pattern=JOB_ID_PATTERN, description="lowercase DNS label, ≤ 40 chars")
]
EntrypointStr = Annotated[
    str, msgspec.Meta(pattern=ENTRYPOINT_PATTERN, description="package.module:Class[/scenario]")
]
BundleRefStr = Annotated[
    str, msgspec.Meta(pattern=BUNDLE_REF_PATTERN, description="host[:port]/repo@sha256:<64 hex>")
]
Seed = Annotated[int, msgspec.Meta(ge=0, le=SEED_MAX)]
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_QUANTITY_RE = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?\Z")


def new_job_id() -> str:
    """A fresh random job id (`job-` + 12 hex)."""
    return "job-" + secrets.token_hex(6)


class ParameterSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One named parameter: a closed range [lower, upper], int or float, optionally log-scaled."""

    name: str
    lower: float
    upper: float
    kind: Literal["float", "int"] = "float"
    log: bool = False

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(f"parameter name {self.name!r} is not a Python identifier")
        if not (math.isfinite(self.lower) and math.isfinite(self.upper)):
            raise ValueError(f"parameter {self.name!r}: bounds must be finite")
        if self.lower > self.upper or (self.kind == "float" and self.lower == self.upper):
            raise ValueError(
                f"parameter {self.name!r}: lower {self.lower} must be below upper {self.upper}"
            )
        if self.kind == "int" and (self.lower != int(self.lower) or self.upper != int(self.upper)):
            raise ValueError(f"parameter {self.name!r}: int bounds must be whole numbers")
        if self.log and self.lower <= 0:
            raise ValueError(f"parameter {self.name!r}: a log-scaled range needs lower > 0")

    def check(self, value: Scalar) -> None:
        """Raise InvalidMessage if `value` is not of this kind or outside the range."""
        field = f"params.{self.name}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidMessage(
                f"parameter {self.name!r} must be a number, got {value!r}", field=field
            )
        if self.kind == "int" and not isinstance(value, int):
            raise InvalidMessage(
                f"parameter {self.name!r} is an int parameter, got {value!r}", field=field
            )
        if not self.lower <= value <= self.upper:
            raise InvalidMessage(
                f"parameter {self.name!r} = {value!r} is outside [{self.lower}, {self.upper}]",
                field=field,
                hint="use a value inside the model's declared parameter space",
            )


class ParameterSpace(msgspec.Struct, frozen=True, kw_only=True):
    """The named parameters a model accepts, in a fixed order."""

    specs: list[ParameterSpec]

    def __post_init__(self) -> None:
        if not self.specs:
            raise ValueError("a parameter space needs at least one parameter")
        names = [s.name for s in self.specs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"parameter names repeat: {', '.join(dupes)}")

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    def spec(self, name: str) -> ParameterSpec:
        for s in self.specs:
            if s.name == name:
                return s
        raise KeyError(name)

    def check(self, params: Mapping[str, Scalar]) -> None:
        """Raise InvalidMessage if `params` has unknown or missing names or values out of range."""
        unknown = sorted(set(params) - set(self.names))
        if unknown:
            raise InvalidMessage(
                f"unknown parameter(s) {', '.join(unknown)}; "
                f"the model declares {', '.join(self.names)}",
                field="params",
            )
        missing = [n for n in self.names if n not in params]
        if missing:
            raise InvalidMessage(f"missing parameter(s) {', '.join(missing)}", field="params")
        for s in self.specs:
            s.check(params[s.name])


class ParameterSet(msgspec.Struct, frozen=True, kw_only=True, dict=True):
    """One point in parameter space: scalar values by name. `param_id` is derived."""

    params: dict[str, Scalar]

    def __post_init__(self) -> None:
        for name in self.params:
            if not _NAME_RE.match(name):
                raise ValueError(f"parameter name {name!r} is not a Python identifier")
        normalize(self.params, "params")  # refuses NaN / Inf with the field named

    @functools.cached_property
    def param_id(self) -> str:
        return _param_id(self.params)


class SimTask(msgspec.Struct, frozen=True, kw_only=True, dict=True):
    """One deterministic simulation: model, parameters and seed on one bundle."""

    bundle_ref: BundleRefStr
    entrypoint: EntrypointStr
    params: ParameterSet
    seed: Seed
    replicate: Annotated[int, msgspec.Meta(ge=0)] = 0
    config: dict[str, Any] = {}
    outputs: list[str] | None = None

    def __post_init__(self) -> None:
        normalize(self.config, "config")

    @property
    def bundle_digest(self) -> str:
        return self.bundle_ref.rsplit("@", 1)[1]

    @functools.cached_property
    def task_id(self) -> str:
        return _task_id(
            bundle_digest=self.bundle_digest,
            entrypoint=self.entrypoint,
            param_id=self.params.param_id,
            seed=self.seed,
            config=self.config,
            outputs=self.outputs,
        )


class Resources(msgspec.Struct, frozen=True, kw_only=True):
    """Per-runner resource requests, as Kubernetes quantities (`"2"`, `"500m"`, `"4Gi"`)."""

    cpu: str = "1"
    memory: str = "1Gi"

    def __post_init__(self) -> None:
        for name in ("cpu", "memory"):
            if not _QUANTITY_RE.match(getattr(self, name)):
                raise ValueError(
                    f"{name} {getattr(self, name)!r} is not a Kubernetes quantity like '2' or '4Gi'"
                )


class SimBatch(msgspec.Struct, frozen=True, kw_only=True):
    """Tasks that came from one sampling method."""

    batch_id: str
    sampling_method: str
    tasks: list[SimTask]


class SimJob(msgspec.Struct, frozen=True, kw_only=True):
    """A study bound to one bundle: what the submitter enqueues and the runners execute."""

    job_id: JobId
    bundle_ref: BundleRefStr
    batches: list[SimBatch]
    resources: Resources = Resources()
    metadata: dict[str, str] = {}

    def __post_init__(self) -> None:
        if not re.match(JOB_ID_PATTERN, self.job_id):
            raise ValueError(
                f"job_id {self.job_id!r} must be a lowercase DNS label of at most 40 chars"
            )
        seen: dict[str, int] = {}
        for i, task in enumerate(self.tasks()):
            if task.bundle_ref != self.bundle_ref:
                raise ValueError(
                    f"task #{i} uses bundle {task.bundle_ref}, the job {self.bundle_ref}"
                )
            if task.task_id in seen:
                raise ValueError(f"task #{i} repeats task #{seen[task.task_id]} (same task_id)")
            seen[task.task_id] = i
        if not seen:
            raise ValueError("a job needs at least one task")

    def tasks(self) -> Iterator[SimTask]:
        for batch in self.batches:
            yield from batch.tasks

    @property
    def n_tasks(self) -> int:
        return sum(len(b.tasks) for b in self.batches)


class SimulationStudy(msgspec.Struct, frozen=True, kw_only=True):
    # The multiplication sign stays: msgspec publishes this docstring as the description in
    # the committed schema shared/contracts/schemas/modelops.cmd.submit_job.json.
    """An experimental design: parameter sets × replicates for one model, with no bundle yet."""  # noqa: RUF002

    model: EntrypointStr
    parameter_sets: list[ParameterSet]
    name: str = "study"
    scenario: str | None = None
    sampling_method: str = "explicit"
    n_replicates: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1
    base_seed: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] = 0  # derive_seed's range
    config: dict[str, Any] = {}
    outputs: list[str] | None = None
    parameter_space: ParameterSpace | None = None
    metadata: dict[str, str] = {}

    def __post_init__(self) -> None:
        # InvalidMessage (a ValueError, so msgspec still wraps it) names the field at fault.
        # msgspec checks Meta constraints only when decoding; direct construction must match.
        if isinstance(self.n_replicates, bool) or not 1 <= self.n_replicates <= 100_000:
            raise InvalidMessage(
                f"n_replicates must be between 1 and 100000, got {self.n_replicates!r}",
                field="n_replicates",
            )
        if isinstance(self.base_seed, bool) or not 0 <= self.base_seed < 2**63:
            raise InvalidMessage(
                f"base_seed must be an int in [0, 2**63), got {self.base_seed!r}", field="base_seed"
            )
        ep = parse_entrypoint(self.model)
        if self.scenario and ep.scenario and ep.scenario != self.scenario:
            raise InvalidMessage(
                f"model names scenario {ep.scenario!r} but scenario is {self.scenario!r}",
                field="scenario",
            )
        if self.scenario is not None:
            try:
                parse_entrypoint(f"{ep.target}/{self.scenario}")
            except InvalidMessage as exc:
                raise InvalidMessage(
                    f"scenario {self.scenario!r} is not a name of letters, digits,"
                    " '_', '-' and '.'",
                    field="scenario",
                ) from exc
        if not self.parameter_sets:
            raise InvalidMessage("a study needs at least one parameter set", field="parameter_sets")
        seen: dict[str, int] = {}
        for i, ps in enumerate(self.parameter_sets):
            if self.parameter_space is not None:
                try:
                    self.parameter_space.check(ps.params)
                except InvalidMessage as exc:
                    raise InvalidMessage(
                        f"parameter set #{i}: {exc.message}",
                        field=f"parameter_sets.{i}.{exc.field}",
                        hint=exc.hint,
                    ) from exc
            if ps.param_id in seen:
                raise InvalidMessage(
                    f"parameter set #{i} repeats #{seen[ps.param_id]}; "
                    "use n_replicates for repeats",
                    field=f"parameter_sets.{i}",
                )
            seen[ps.param_id] = i
        normalize(self.config, "config")

    @property
    def entrypoint(self) -> str:
        """The full entrypoint tasks run: model plus scenario."""
        ep = parse_entrypoint(self.model)
        return str(ep.with_scenario(self.scenario or ep.scenario))

    @property
    def n_tasks(self) -> int:
        return len(self.parameter_sets) * self.n_replicates

    def bind(
        self,
        bundle_ref: str,
        *,
        job_id: str | None = None,
        resources: Resources | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> SimJob:
        """Pin this study to one bundle: one SimBatch of n_sets x n_replicates SimTasks."""
        ref = str(parse_bundle_ref(bundle_ref))
        entrypoint = self.entrypoint
        tasks = []
        for ps in self.parameter_sets:
            for rep, seed in enumerate(
                derive_seeds(self.base_seed, ps.param_id, self.n_replicates)
            ):
                tasks.append(
                    SimTask(
                        bundle_ref=ref,
                        entrypoint=entrypoint,
                        params=ps,
                        seed=seed,
                        replicate=rep,
                        config=self.config,
                        outputs=self.outputs,
                    )
                )
        return SimJob(
            job_id=new_job_id() if job_id is None else job_id,  # '' is an error, not 'new'
            bundle_ref=ref,
            batches=[
                SimBatch(
                    batch_id=f"{self.name}-0", sampling_method=self.sampling_method, tasks=tasks
                )
            ],
            resources=resources or Resources(),
            metadata={"study": self.name, **dict(self.metadata), **dict(metadata or {})},
        )
