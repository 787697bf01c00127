"""Find the benchmark modules, run the chosen ones, and gather one document of their results.

A benchmark is any module `bench/bench_<name>.py` with `run(args: BenchArgs) -> list[Result]`;
dropping such a file into bench/ is all it takes to plug one in (`python -m bench <name>`).
"""

from __future__ import annotations

import datetime as dt
import importlib
import pkgutil
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import structlog

from .common import BenchArgs, Profile, Result
from .machine import load_average, machine_info

__all__ = [
    "BenchmarkRun",
    "HarnessReport",
    "UnknownBenchmark",
    "discover",
    "load",
    "run_benchmarks",
]

log = structlog.get_logger(__name__)

_PREFIX = "bench_"


class UnknownBenchmark(LookupError):
    """A name on the command line matches no bench/bench_<name>.py module."""


@dataclass
class BenchmarkRun:
    """One benchmark's outcome: its results, or the error that stopped it."""

    name: str
    module: str
    seconds: float
    results: list[Result] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "results": [r.to_json() for r in self.results],
        }


@dataclass
class HarnessReport:
    """Everything one `python -m bench` run measured, and on what."""

    command: str
    profile: Profile
    repeat: int | None
    options: Mapping[str, str]
    started_at: dt.datetime
    finished_at: dt.datetime
    machine: dict[str, Any]
    load_average_end: list[float]
    runs: list[BenchmarkRun]

    @property
    def results(self) -> list[Result]:
        return [r for run in self.runs for r in run.results]

    @property
    def errors(self) -> dict[str, str]:
        return {run.name: run.error for run in self.runs if run.error}

    def to_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "profile": self.profile,
            "repeat": self.repeat,
            "options": dict(self.options),
            "started_at": self.started_at.isoformat(timespec="seconds"),
            "finished_at": self.finished_at.isoformat(timespec="seconds"),
            "machine": self.machine,
            "load_average_end": self.load_average_end,
            "benchmarks": [r.to_json() for r in self.runs],
        }


def discover() -> dict[str, str]:
    """Benchmark name -> module name, for every bench/bench_<name>.py, sorted by name."""
    package = Path(__file__).resolve().parent
    found = {
        info.name.removeprefix(_PREFIX): f"{__package__}.{info.name}"
        for info in pkgutil.iter_modules([str(package)])
        if info.name.startswith(_PREFIX)
    }
    return dict(sorted(found.items()))


def load(name: str) -> ModuleType:
    """The benchmark module `name`, checked to have a `run` function."""
    known = discover()
    if name not in known:
        raise UnknownBenchmark(
            f"no benchmark named {name!r}; known: {', '.join(known) or 'none'}"
            f" (a benchmark is a module bench/{_PREFIX}<name>.py)"
        )
    module = importlib.import_module(known[name])
    if not callable(getattr(module, "run", None)):
        raise UnknownBenchmark(f"{known[name]} has no run(args) -> list[Result] function")
    return module


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_benchmarks(
    names: Sequence[str] = (),
    *,
    profile: Profile = "full",
    repeat: int | None = None,
    options: Mapping[str, str] | None = None,
    progress: Callable[[str], None] = _stderr,
    keep_workdir: bool = False,
    command: str = "",
) -> HarnessReport:
    """Run `names` (all when empty) in one temporary folder and gather what they measured.

    A benchmark that raises is recorded with its traceback and the others still run: one
    broken benchmark should not hide the figures of the rest.
    """
    chosen = list(names) or list(discover())
    modules = {name: load(name) for name in chosen}  # fail on a typo before anything runs
    started = dt.datetime.now(dt.UTC)
    machine = machine_info()
    workdir = Path(tempfile.mkdtemp(prefix="modelops-bench-"))
    runs: list[BenchmarkRun] = []
    try:
        args = BenchArgs(workdir=workdir, profile=profile, repeat=repeat, options=options or {})
        with args.session():
            for name, module in modules.items():
                progress(f"bench: {name} ({profile}) ...")
                t0 = time.perf_counter()
                try:
                    results = list(module.run(args))
                except Exception as exc:  # outermost loop: record it, run the other benchmarks
                    run = BenchmarkRun(
                        name,
                        module.__name__,
                        time.perf_counter() - t0,
                        error=traceback.format_exc(),
                    )
                    # the traceback goes into the JSON and the CLI's error output
                    log.error("bench.failed", benchmark=name, error=f"{type(exc).__name__}: {exc}")
                else:
                    run = BenchmarkRun(name, module.__name__, time.perf_counter() - t0, results)
                progress(f"bench: {name} done in {run.seconds:.1f}s")
                runs.append(run)
        if unused := sorted(set(args.options) - args.used_options):
            progress(f"bench: warning: no benchmark read option(s) {', '.join(unused)}")
    finally:
        if keep_workdir:
            progress(f"bench: files kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return HarnessReport(
        command=command,
        profile=profile,
        repeat=repeat,
        options=dict(options or {}),
        started_at=started,
        finished_at=dt.datetime.now(dt.UTC),
        machine=machine,
        load_average_end=load_average(),
        runs=runs,
    )
