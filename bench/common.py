"""What every benchmark shares: the Result it returns, the args it gets, and fair timing.

Every figure is a ratio against a baseline measured in the same run, because absolute numbers
on a shared 2-core machine drift with whatever else runs; a ratio of two things timed side by
side drifts far less. `interleaved` alternates the cases (ABBA order) so a burst of load hits
both, and reports medians with their spread so a reader can see how noisy the run was.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import structlog

__all__ = [
    "MIB",
    "BenchArgs",
    "Case",
    "Profile",
    "Result",
    "Samples",
    "Servers",
    "Target",
    "interleaved",
]

log = structlog.get_logger(__name__)

MIB = 1 << 20
T = TypeVar("T")

Profile = Literal["full", "quick", "smoke"]
"""full: the documented figures; quick: under ~20 s per benchmark; smoke: tiny, for the tests."""


@dataclass(frozen=True)
class Target:
    """A bound a figure must meet: `op bound` on the ratio (default) or on the value itself."""

    op: Literal["<=", "<", ">=", ">", "=="]
    bound: float
    on: Literal["ratio", "value"] = "ratio"

    def met(self, ratio: float | None, value: float) -> bool | None:
        """Whether the figure meets the target (None when the ratio it needs is missing)."""
        x = ratio if self.on == "ratio" else value
        if x is None or math.isnan(x):
            return None
        match self.op:
            case "<=":
                return x <= self.bound
            case "<":
                return x < self.bound
            case ">=":
                return x >= self.bound
            case ">":
                return x > self.bound
            case "==":
                return math.isclose(x, self.bound, rel_tol=1e-9, abs_tol=0.0)
        raise ValueError(f"unknown target operator {self.op!r}")

    def describe(self, unit: str = "") -> str:
        """E.g. `≤ 1.3x` for a ratio, `< 100 MiB` for a value."""
        op = {"<=": "≤", ">=": "≥", "==": "=", "<": "<", ">": ">"}[self.op]
        suffix = "x" if self.on == "ratio" else f" {unit}".rstrip()
        return f"{op} {self.bound:g}{suffix}"


@dataclass(frozen=True)
class Samples:
    """Repeated measurements of one quantity; the median is the figure, the spread its noise."""

    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError("Samples needs at least one value")

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def spread(self) -> float:
        """(max - min) / median: 0.1 means the repetitions ranged over 10% of the figure."""
        med = self.median
        return (max(self.values) - min(self.values)) / med if med else 0.0

    def scaled(self, fn: Callable[[float], float]) -> Samples:
        """The same samples through `fn` (e.g. seconds -> MiB/s)."""
        return Samples(tuple(fn(v) for v in self.values))


@dataclass(frozen=True)
class Result:
    """One figure of a benchmark, with the baseline it was measured against in the same run.

    `ratio` is value / baseline_value, so its meaning follows the unit: for times lower is
    better, for throughputs higher is better; the Target says which way passes.
    """

    name: str
    value: float
    unit: str
    baseline: str | None = None
    baseline_value: float | None = None
    target: Target | None = None
    notes: str = ""
    samples: tuple[float, ...] = ()
    baseline_samples: tuple[float, ...] = ()

    @property
    def ratio(self) -> float | None:
        if self.baseline_value is None:
            return None
        if self.baseline_value == 0:
            return math.inf if self.value else math.nan
        return self.value / self.baseline_value

    @property
    def passed(self) -> bool | None:
        """True/False against the target; None when there is no target."""
        return None if self.target is None else self.target.met(self.ratio, self.value)

    @property
    def spread(self) -> float | None:
        """The larger relative spread of the value's and the baseline's repetitions."""
        spreads = [Samples(s).spread for s in (self.samples, self.baseline_samples) if s]
        return max(spreads) if spreads else None

    @classmethod
    def compare(
        cls,
        name: str,
        ours: Samples,
        baseline: Samples,
        *,
        unit: str,
        baseline_name: str,
        target: Target | None = None,
        notes: str = "",
    ) -> Result:
        """A Result from two sets of samples: the medians are the figures."""
        return cls(
            name=name,
            value=ours.median,
            unit=unit,
            baseline=baseline_name,
            baseline_value=baseline.median,
            target=target,
            notes=notes,
            samples=ours.values,
            baseline_samples=baseline.values,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "baseline": self.baseline,
            "baseline_value": self.baseline_value,
            "ratio": self.ratio,
            "target": None
            if self.target is None
            else {"op": self.target.op, "bound": self.target.bound, "on": self.target.on},
            "passed": self.passed,
            "spread": self.spread,
            "samples": list(self.samples),
            "baseline_samples": list(self.baseline_samples),
            "notes": self.notes,
        }


@dataclass
class Case:
    """One timed thing: `prepare()` (untimed) makes the state, `run(state)` is timed."""

    run: Callable[[Any], object]
    prepare: Callable[[], Any] = lambda: None
    cleanup: Callable[[Any], None] = lambda state: None


def interleaved(cases: Mapping[str, Case], *, repeat: int, warmup: int = 0) -> dict[str, Samples]:
    """Time each case `repeat` times, alternating their order (ABBA...), after `warmup` rounds.

    Alternating matters on a shared machine: a burst of someone else's load then lands on
    every case instead of on whichever happened to run during it.
    """
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, got {repeat}")
    names = list(cases)
    times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(warmup + repeat):
        for name in names if i % 2 == 0 else reversed(names):
            case = cases[name]
            state = case.prepare()
            try:
                t0 = time.perf_counter()
                case.run(state)
                elapsed = time.perf_counter() - t0
            finally:
                case.cleanup(state)
            if i >= warmup:
                times[name].append(elapsed)
    return {n: Samples(tuple(v)) for n, v in times.items()}


class Servers:
    """Real servers a benchmark asks for, started once per harness run, stopped at its end."""

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self._stack = contextlib.ExitStack()
        self._started: dict[str, Any] = {}

    def _get(self, name: str, make: Callable[[Path], Any]) -> Any:
        if name not in self._started:
            folder = self._workdir / "servers" / name
            folder.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            self._started[name] = self._stack.enter_context(make(folder))
            log.debug("bench.server_started", server=name, seconds=time.perf_counter() - t0)
        return self._started[name]

    def oci_registry(self) -> Any:
        """Debian's docker-registry on a free loopback port (tests.support.servers.OciRegistry)."""
        from tests.support.servers import OciRegistry

        return self._get("oci-registry", lambda d: OciRegistry(d / "root"))

    def s3(self) -> Any:
        """SeaweedFS S3 on free loopback ports (tests.support.servers.SeaweedS3)."""
        from tests.support.servers import SeaweedS3

        return self._get("s3", SeaweedS3)

    def nats(self) -> Any:
        """`nats-server -js` on a free loopback port (modelops_runtime.processes.NatsServer)."""
        from modelops_runtime.processes import NatsServer

        return self._get("nats", NatsServer)

    def close(self) -> None:
        self._stack.close()
        self._started.clear()


@dataclass
class BenchArgs:
    """What `run(args)` of every benchmark module gets from the harness.

    `workdir` is a fresh folder removed after the run; `servers` starts real servers lazily and
    stops them at the end; `repeat` (if set) overrides each benchmark's repetition count;
    `options` are the command line's `--set name=value` pairs, read with `option()`.
    """

    workdir: Path
    profile: Profile = "full"
    repeat: int | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    servers: Servers = field(init=False)
    used_options: set[str] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        self.servers = Servers(self.workdir)

    @property
    def quick(self) -> bool:
        return self.profile != "full"

    def pick(self, *, full: Any, quick: Any, smoke: Any) -> Any:
        """The size or count for this profile."""
        return {"full": full, "quick": quick, "smoke": smoke}[self.profile]

    def reps(self, *, full: int, quick: int = 3, smoke: int = 1) -> int:
        """Repetitions: `repeat` if given, else the profile's count."""
        return self.repeat or self.pick(full=full, quick=quick, smoke=smoke)

    def option(self, name: str, default: T, convert: Callable[[str], T]) -> T:
        """`--set name=value` converted by `convert`, else `default`."""
        self.used_options.add(name)
        if name not in self.options:
            return default
        raw = self.options[name]
        try:
            return convert(raw)
        except ValueError as exc:
            raise ValueError(f"--set {name}={raw!r}: {exc}") from exc

    def folder(self, name: str) -> Path:
        """A new, empty folder under `workdir` for one benchmark's files."""
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=False)
        return path

    @contextlib.contextmanager
    def session(self) -> Iterator[BenchArgs]:
        """Stop the servers when the run ends, however it ends."""
        try:
            yield self
        finally:
            self.servers.close()
