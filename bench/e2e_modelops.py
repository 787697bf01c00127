"""One study through the embedded stack, timed from SubmitJob to JobCompleted.

The study goes in through the CLI's own client (`JobClient.submit`, which `api.submit` wraps),
so what is timed is what a user's `api.submit` + `api.wait` costs: SubmitJob validation and
binding, job spec upload, task enqueue, launching a local runner process (interpreter start,
bundle pull or cache hit, worker pool start), running every task, storing outputs, tracking,
and the results table the submitter writes before it publishes JobCompleted.

Events are read from a core NATS subscription opened before SubmitJob is sent, so neither the
first TaskCompleted nor JobCompleted can be missed, and nothing replays the job's history.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psutil
import structlog

from modelops_cli.jobclient import JobClient
from modelops_contracts import (
    JobCompleted,
    LaunchOptions,
    ParameterSet,
    SimulationStudy,
    TaskCompleted,
    decode_event,
)
from modelops_contracts.subjects import job_event_subject
from modelops_runtime.nats_setup import connect

from .e2e_stack import BenchStack

__all__ = ["JobRun", "MemoryPeaks", "run_study", "sample_memory", "study"]

log = structlog.get_logger(__name__)

_SAMPLE_S = 0.1


@dataclass(frozen=True)
class JobRun:
    """What one job took: seconds from sending SubmitJob to its first and last TaskCompleted
    and to JobCompleted (the gap is the results table), and the job's final counts."""

    n_tasks: int
    first_task_s: float
    total_s: float
    completed: int
    failed: int
    last_task_s: float = 0.0


@dataclass
class MemoryPeaks:
    """Peak RSS (bytes) seen while sampling: the stack process (registrar, bundler and the
    submitter), the runner processes (runner + its workers, summed) and nats-server."""

    stack: int = 0
    runners: int = 0
    nats: int = 0
    samples: int = 0
    _seen_runner_pids: set[int] = field(default_factory=set)


def study(
    entrypoint: str, n_tasks: int, *, base_seed: int, config: dict | None = None
) -> SimulationStudy:
    """One parameter set, `n_tasks` replicates: n_tasks distinct (params, seed) tasks.

    A fresh `base_seed` per repetition gives new task ids, so no result is reused from an
    earlier job (the submitter's cache would otherwise skip them).
    """
    params = {"x": 0.5} if entrypoint.startswith("noop") else {"beta": 0.05, "gamma": 0.1, "I0": 10}
    return SimulationStudy(
        model=entrypoint,
        parameter_sets=[ParameterSet(params=params)],
        n_replicates=n_tasks,
        base_seed=base_seed,
        config=config or {},
        name=f"bench-{entrypoint.split(':')[-1].lower()}-{n_tasks}",
    )


def _rss(proc: psutil.Process) -> int:
    try:
        return proc.memory_info().rss
    except psutil.Error:
        return 0


@contextmanager
def sample_memory(stack: BenchStack) -> Iterator[MemoryPeaks]:
    """Sample RSS every 0.1 s in a thread while the block runs (psutil; Linux RSS)."""
    peaks = MemoryPeaks()
    stop = threading.Event()
    main = psutil.Process(stack.pid)

    def loop() -> None:
        while not stop.is_set():
            stack_rss, runners, nats = _rss(main), 0, 0
            try:
                children = main.children(recursive=True)
            except psutil.Error:
                children = []
            for child in children:
                try:
                    name = child.name()
                except psutil.Error:
                    continue
                if name.startswith("nats-server"):
                    nats += _rss(child)
                else:
                    runners += _rss(child)
                    peaks._seen_runner_pids.add(child.pid)
            peaks.stack = max(peaks.stack, stack_rss)
            peaks.runners = max(peaks.runners, runners)
            peaks.nats = max(peaks.nats, nats)
            peaks.samples += 1
            stop.wait(_SAMPLE_S)

    thread = threading.Thread(target=loop, name="bench-rss", daemon=True)
    thread.start()
    try:
        yield peaks
    finally:
        stop.set()
        thread.join()


async def _run(
    stack: BenchStack, sim: SimulationStudy, options: LaunchOptions, timeout_s: float
) -> JobRun:
    cfg = stack.config
    nc = await connect(cfg.require_nats_url(), name="bench-e2e-events")
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    done: dict[str, JobCompleted] = {}
    got_done = asyncio.Event()

    async def on_first(msg) -> None:
        job, now = msg.subject.split(".")[3], time.perf_counter()
        first.setdefault(job, now)
        last[job] = now

    async def on_done(msg) -> None:
        event = decode_event(msg.data)
        if isinstance(event, JobCompleted):
            done[event.job_id] = event
            got_done.set()

    try:
        await nc.subscribe(job_event_subject("*", TaskCompleted.kind), cb=on_first)
        await nc.subscribe(job_event_subject("*", JobCompleted.kind), cb=on_done)
        await nc.flush()
        async with JobClient.open(cfg) as client:
            t0 = time.perf_counter()
            answer = await client.submit(sim, stack.bundle_ref, options=options)
        job_id = answer.job_id
        deadline = t0 + timeout_s
        while job_id not in done:
            got_done.clear()
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError(
                    f"job {job_id} ({answer.n_tasks} tasks) did not complete in {timeout_s:g}s;"
                    f" see {stack.root / '.modelops' / 'jobs' / job_id}"
                )
            try:
                await asyncio.wait_for(got_done.wait(), left)
            except TimeoutError:
                continue
        t_end = time.perf_counter()
        event = done[job_id]
    finally:
        await nc.close()
    if event.failed or event.completed != answer.n_tasks:
        raise RuntimeError(
            f"job {job_id}: {event.completed}/{answer.n_tasks} completed, {event.failed} failed;"
            f" a failed benchmark job measures nothing (see 'modelops logs {job_id}')"
        )
    return JobRun(
        n_tasks=answer.n_tasks,
        first_task_s=first.get(job_id, t_end) - t0,
        last_task_s=last.get(job_id, t_end) - t0,
        total_s=t_end - t0,
        completed=event.completed,
        failed=event.failed,
    )


def run_study(
    stack: BenchStack, sim: SimulationStudy, *, workers: int, timeout_s: float = 600.0
) -> JobRun:
    """Submit `sim` on the benchmark bundle with 1 local runner of `workers` workers; wait."""
    options = LaunchOptions(runners=1, workers_per_runner=workers)
    run = asyncio.run(_run(stack, sim, options, timeout_s))
    log.info(
        "bench.e2e.job",
        study=sim.name,
        seconds=round(run.total_s, 3),
        first_task_s=round(run.first_task_s, 3),
        last_task_s=round(run.last_task_s, 3),
    )
    return run
