"""The benchmark's workloads and the arithmetic on their timings (pure, no I/O but the clock).

Task time is measured here, in this process, by calling the model directly: that is the
`task_time` of the ideal `n_tasks x task_time / workers`, the time the tasks would take with
no engine at all. Per-task overhead is `workers x (total - ideal) / n_tasks`: the time one
worker slot loses per task to everything that is not the model (bench_runner's definition).
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["OVERHEAD_FLOOR_MS", "Workload", "calibrate_days", "overhead_ms", "task_seconds"]

SLOW_FACTOR = 25  # the ~500 ms variant runs 25 x the ~20 ms variant's days


@dataclass(frozen=True)
class Workload:
    """One row of the throughput table: a model, its config, its size and its task time."""

    key: str
    entrypoint: str
    src: Path
    config: dict
    params: dict
    n_tasks: int
    task_s: float

    def ideal_s(self, workers: int) -> float:
        return self.n_tasks * self.task_s / workers


# An engine can beat the calibrated ideal by timing noise (tasks ran a little faster than when
# calibrated); below this the overhead is not measurable, and a floor keeps ratios defined.
OVERHEAD_FLOOR_MS = 0.01


def overhead_ms(total_s: float, ideal_s: float, n_tasks: int, workers: int) -> float:
    """Worker-slot milliseconds lost per task to the engine, at least OVERHEAD_FLOOR_MS."""
    return max(OVERHEAD_FLOOR_MS, (total_s - ideal_s) * workers / n_tasks * 1000)


def _load(src: Path, entrypoint: str) -> object:
    sys.path.insert(0, str(src))
    try:
        module, _, cls = entrypoint.partition(":")
        return getattr(__import__(module), cls)()
    finally:
        sys.path.remove(str(src))


def task_seconds(src: Path, entrypoint: str, config: dict, params: dict, calls: int = 7) -> float:
    """Mean seconds of one `simulate` call in this process (model built once, as workers do).

    The mean, not the median: the ideal a study is held against is n x the mean task time,
    and a stochastic model's time varies with the seed (an epidemic that dies out early is
    fast), which the median of a few seeds misjudges.
    """
    model = _load(src, entrypoint)
    model.config = {**getattr(type(model), "config", {}), **config}  # type: ignore[attr-defined]
    samples = []
    for seed in range(calls):
        t0 = time.perf_counter()
        model.simulate(params, seed)  # type: ignore[attr-defined]
        samples.append(time.perf_counter() - t0)
    return statistics.fmean(samples)


def calibrate_days(src: Path, entrypoint: str, params: dict, target_s: float) -> int:
    """The `days` config for which one call takes about `target_s` on this machine."""
    days = 160
    for _ in range(3):
        took = task_seconds(src, entrypoint, {"days": days}, params, calls=5)
        days = max(10, round(days * target_s / took))
    return days
