"""Runner benchmark (issue 5): tasks/s of `python -m modelops_runner` vs a bare loop, same cores.

Two models from one bundle of the StochasticSIR example project: a no-op (the runner's own
per-task cost) and the example's StochasticSIR with `days` calibrated to ~20 ms per call.

- ours: a job queued the way the submitter queues it (spec.json, the runners-<job_id>
  consumer, one message per task), then one runner process with one worker per usable core,
  against real nats-server, an OCI image-layout bundle and a file:// blob store: each task is
  fetched, run in a worker, converted to Parquet, stored with its _done.json, reported as
  TaskCompleted (PubAck awaited) and acked. Throughput is measured between the first and the
  last TaskCompleted seen on the bus (steady state: process and pool start-up excluded);
- baseline: the same number of processes (multiprocessing, spawn), each importing the same
  model from the same folder, building it once, and calling `simulate(params, seed)` in a
  plain loop over its share of the seeds, timed from a common start to the last one done.

Per-task overhead is workers x (1/ours - 1/baseline), in ms: the time one worker slot loses per
task to everything that is not the model. Target: ours ≥ 0.95 of the baseline on ~20 ms tasks,
as the median over repetitions of each repetition's own ratio (its runner runs and its bare
loop are seconds apart, so a shared machine's drift in speed between repetitions cancels).

The SIR figures are taken twice, with the file:// blob store on disk (the embedded stack's
default: results are stored in batches, each stage made durable by one syncfs) and in tmpfs
(/dev/shm, where syncing costs nothing), which separates the runner's own cost from the
disk's. Wall-clock rates on a shared 2-core machine move with other people's load, so each
figure also gets its CPU cost per task (runner + workers + nats-server, between the first
and last task to finish) against the bare loop's, which such load disturbs far less. Task
times are the TaskCompleted events' own (when the task came back from its worker), as the
runner reports results in batches (up to MODELOPS_RUNNER_STORE_WINDOW_S apart).
Run: `python -m bench runner` (or `python bench/bench_runner.py`), about 80 s in full.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import multiprocessing as mp
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import structlog

if __package__ in (None, ""):  # `python bench/bench_runner.py`: run through the harness
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.__main__ import main as _bench_main

    raise SystemExit(_bench_main(["runner", *sys.argv[1:]]))

from nats.js.api import AckPolicy, ConsumerConfig

from modelops_bundle.push import push_bundle
from modelops_bundle.registration import register_model
from modelops_bundle.registry_file import dump_registry, load_registry
from modelops_bundle.stores import open_store
from modelops_contracts import LaunchOptions, ParameterSet, SimTask, decode_event, encode
from modelops_contracts.jobs import JobSpec, blob_keys
from modelops_contracts.subjects import TASKS_STREAM, job_event_subject, task_subject
from modelops_runner.settings import usable_cores
from modelops_runtime.blobstore import open_blob_store
from modelops_runtime.nats_setup import connect, ensure_jetstream

from .common import BenchArgs, Result, Samples, Target

__all__ = ["run"]

log = structlog.get_logger(__name__)

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "sir"
SIR = "model:StochasticSIR"
NOOP = "bench_noop:NoOp"
NOOP_SOURCE = '''"""Does nothing: what is left of a task's time is the runner's own cost."""


class NoOp:
    def simulate(self, params: dict, seed: int) -> dict:
        return {}
'''
EFFICIENCY_TARGET = Target(">=", 0.95)
CPU_TARGET = Target("<=", round(1 / 0.95, 3))  # the same goal, on CPU per task (lower is better)
_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass(frozen=True)
class Plan:
    workers: int
    noop_tasks: int
    sir_tasks: int
    reps: int
    sir_reps: int
    sir_task_ms: float = 20.0


# ----------------------------------------------------------------------------- the bundle


def _project(folder: Path) -> Path:
    """The example project plus a no-op model, registered as a modeler would."""
    project = folder / "project"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".modelops-bundle"))
    (project / "src" / "bench_noop.py").write_text(NOOP_SOURCE)
    register_model(project, SIR, "src/model.py", data=["data"])
    register_model(project, NOOP, "src/bench_noop.py")
    return project


def _push(project: Path, layout: Path) -> str:
    registry = load_registry(project)
    result = push_bundle(
        project,
        registry,
        open_store(f"oci-layout:{layout}"),
        repository="bench/runner",
        registry_yaml=dump_registry(registry),
    )
    return result.bundle.bundle_ref


def _calibrate_days(src: Path, target_ms: float) -> int:
    """`days` for which the example's simulate takes about `target_ms` here, single-threaded."""
    sys.path.insert(0, str(src))
    try:
        import model  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(src))
    instance = model.StochasticSIR()
    days = 160

    def timed() -> float:
        instance.config = {**model.StochasticSIR.config, "days": days}
        samples = []
        for seed in range(7):
            t0 = time.perf_counter()
            instance.simulate({"beta": 0.05}, seed)
            samples.append(time.perf_counter() - t0)
        return sorted(samples)[3] * 1000

    for _ in range(3):
        days = max(10, round(days * target_ms / timed()))
    return days


# ----------------------------------------------------------------------------- the baseline


@dataclass(frozen=True)
class Rate:
    """One measured run: tasks/s (wall clock) and CPU seconds spent per task, all processes."""

    per_s: float
    cpu_ms: float
    split: dict[str, float] | None = None  # CPU ms per task by process: runner, workers, nats


def _bare_worker(
    src: str, entrypoint: str, config: dict, seeds: list[int], start: Any, out: Any
) -> None:
    sys.path.insert(0, src)
    module, _, cls = entrypoint.partition(":")
    model_cls = getattr(__import__(module), cls)
    instance = model_cls()
    instance.config = {**getattr(model_cls, "config", {}), **config}
    out.put("ready")
    start.wait()
    t0, c0 = time.perf_counter(), time.process_time()
    for seed in seeds:
        instance.simulate({"beta": 0.05}, seed)
    out.put((time.perf_counter() - t0, time.process_time() - c0))


def bare_rate(src: Path, entrypoint: str, config: dict, seeds: list[int], workers: int) -> Rate:
    """`workers` processes each looping over its share of `seeds` (the very tasks the runner
    gets: a stochastic model's time depends on the seed): the best these cores can do."""
    n_tasks = len(seeds)
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    saved = {k: os.environ.get(k) for k in _THREAD_ENV}
    os.environ.update(_THREAD_ENV)  # as the pool's workers run: one thread each
    try:
        procs = [
            ctx.Process(
                target=_bare_worker,
                args=(str(src), entrypoint, config, seeds[i::workers], start, out),
            )
            for i in range(workers)
        ]
        for p in procs:
            p.start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    for _ in procs:  # every process has imported and built its model: start them together
        assert out.get(timeout=120) == "ready"
    start.set()
    timings = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    slowest = max(wall for wall, _ in timings)
    return Rate(per_s=n_tasks / slowest, cpu_ms=1000 * sum(c for _, c in timings) / n_tasks)


def _cpu_s(pid: int, *, children: bool) -> float:
    """CPU seconds of process `pid` (or of its live and reaped children), 0 once it is gone."""
    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(pid)
        t = proc.cpu_times()
        if not children:
            return t.user + t.system
        live = 0.0
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                c = child.cpu_times()
                live += c.user + c.system
        return t.children_user + t.children_system + live
    return 0.0


def _cpu_split(runner_pid: int, nats_pid: int) -> dict[str, float]:
    """CPU seconds so far of the runner process, its workers and nats-server."""
    return {
        "runner": _cpu_s(runner_pid, children=False),
        "workers": _cpu_s(runner_pid, children=True),
        "nats": _cpu_s(nats_pid, children=False),
    }


# ----------------------------------------------------------------------------- the runner


async def _queue(nc: Any, store: Any, bundle_ref: str, tasks: list[SimTask]) -> tuple[str, str]:
    """What the submitter does before launching runners; returns (job_id, spec URI)."""
    js = nc.jetstream()
    await ensure_jetstream(js)
    job_id = f"bench-{uuid.uuid4().hex[:10]}"
    spec = JobSpec(
        job_id=job_id,
        bundle_ref=bundle_ref,
        entrypoints=[tasks[0].entrypoint],
        n_tasks=len(tasks),
        task_subject=task_subject(job_id),
        consumer=f"runners-{job_id}",
        options=LaunchOptions(task_timeout_s=600),
    )
    spec_uri = await store.put_bytes(blob_keys.job_spec(job_id), encode(spec))
    await js.add_consumer(
        TASKS_STREAM,
        ConsumerConfig(
            durable_name=spec.consumer,
            filter_subject=spec.task_subject,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30,
            max_deliver=3,
            max_ack_pending=1000,
        ),
    )
    for i in range(0, len(tasks), 1000):
        await asyncio.gather(
            *(
                js.publish(
                    spec.task_subject, encode(t), headers={"Nats-Msg-Id": f"{job_id}:{t.task_id}"}
                )
                for t in tasks[i : i + 1000]
            )
        )
    return job_id, spec_uri


async def _runner_rate(
    ctx: dict[str, Any], blobs_root: Path, tasks: list[SimTask], workers: int
) -> Rate:
    """Steady-state tasks/s of one runner process draining `tasks`, blobs under `blobs_root`."""
    nats_url, folder, layout, bundle_ref = (
        ctx["nats_url"],
        ctx["folder"],
        ctx["layout"],
        ctx["bundle_ref"],
    )
    blobs = blobs_root / f"modelops-bench-blobs-{uuid.uuid4().hex[:8]}"
    store = open_blob_store(f"file://{blobs}")
    nc = await connect(nats_url, name="bench-runner")
    try:
        job_id, spec_uri = await _queue(nc, store, bundle_ref, tasks)
        finished: list[float] = []  # when each task came back from its worker (event time)
        cpu: list[dict[str, float]] = []
        sampled_at: list[float] = []
        done = asyncio.Event()
        runner_pid: list[int] = []

        async def on_completed(msg: Any) -> None:
            finished.append(dt.datetime.fromisoformat(decode_event(msg.data).time).timestamp())
            if len(finished) in (1, len(tasks)):
                cpu.append(_cpu_split(runner_pid[0], ctx["nats_pid"]))
                sampled_at.append(time.time())
            if len(finished) == len(tasks):
                done.set()

        sub = await nc.subscribe(job_event_subject(job_id, "task_completed"), cb=on_completed)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELOPS_", "AWS_"))}
        env.update(
            MODELOPS_NATS_URL=nats_url,
            MODELOPS_JOB_ID=job_id,
            MODELOPS_JOB_SPEC=spec_uri,
            MODELOPS_BLOB_STORE=f"file://{blobs}",
            MODELOPS_BUNDLE_STORE=f"oci-layout:{layout}",
            MODELOPS_BUNDLE_CACHE=str(folder / "bundle-cache"),
            MODELOPS_WORKERS=str(workers),
            MODELOPS_LOG_FORMAT="json",
            MODELOPS_LOG_LEVEL="WARNING",
        )
        log_file = folder / f"runner-{job_id}.log"
        log_fh = await asyncio.to_thread(open, log_file, "wb")
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "modelops_runner", env=env, stdout=log_fh, stderr=log_fh
            )
            runner_pid.append(proc.pid)
            try:
                async with asyncio.timeout(600):
                    exited = asyncio.ensure_future(proc.wait())
                    all_done = asyncio.ensure_future(done.wait())
                    await asyncio.wait({exited, all_done}, return_when=asyncio.FIRST_COMPLETED)
                    if exited.done() and exited.result() == 0:  # the last events may still fly
                        await asyncio.wait({all_done}, timeout=10)
                    all_done.cancel()
                    status = await exited
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        finally:
            log_fh.close()
        await sub.unsubscribe()
        if status != 0 or not done.is_set():
            raise RuntimeError(
                f"runner exited {status} after {len(finished)} of {len(tasks)} tasks: "
                f"{log_file.read_text()[-2000:]}"
            )
        return _steady_rate(finished, cpu, cpu_from=sampled_at[0])
    finally:
        await nc.close()
        shutil.rmtree(blobs, ignore_errors=True)


def _steady_rate(finished: list[float], cpu: list[dict[str, float]], *, cpu_from: float) -> Rate:
    """Rate and CPU per task between the first and the last task to finish; pure.

    Times are the events' own: when each task came back from its worker. The runner reports
    results in batches, so the arrival of the first event already covers a batch of tasks:
    the CPU counted from that moment on is divided by the tasks that finished after it.
    """
    finished = sorted(finished)
    n = len(finished)
    per_s = (n - 1) / max(finished[-1] - finished[0], 1e-9)
    after = max(1, sum(1 for t in finished if t > cpu_from))
    split = {k: 1000 * (cpu[-1][k] - cpu[0][k]) / after for k in cpu[0]}
    return Rate(per_s=per_s, cpu_ms=sum(split.values()), split=split)


def _tasks(bundle_ref: str, entrypoint: str, n: int, config: dict, base: int) -> list[SimTask]:
    params = ParameterSet(params={"beta": 0.05})
    return [
        SimTask(
            bundle_ref=bundle_ref,
            entrypoint=entrypoint,
            params=params,
            seed=base + i,
            config=config,
        )
        for i in range(n)
    ]


# ----------------------------------------------------------------------------- figures

TMPFS = Path("/dev/shm")


@dataclass
class Figures:
    """Rates of one case across repetitions."""

    runs: list[Rate]

    @property
    def rate(self) -> Samples:
        return Samples(tuple(r.per_s for r in self.runs))

    @property
    def cpu(self) -> Samples:
        return Samples(tuple(r.cpu_ms for r in self.runs))


def _measure(
    *,
    label: str,
    entrypoint: str,
    config: dict,
    n_tasks: int,
    plan: Plan,
    ctx: dict[str, Any],
    stores: dict[str, Path],
    reps: int,
) -> tuple[dict[str, Figures], Figures]:
    """Runner rates per blob-store folder, and the bare rate, interleaved rep by rep."""
    ours: dict[str, Figures] = {name: Figures([]) for name in stores}
    bare = Figures([])
    for rep in range(reps):
        tasks = _tasks(ctx["bundle_ref"], entrypoint, n_tasks, config, base=rep * 10**6)
        steps: list[tuple[str, Path | None]] = [*stores.items(), ("bare", None)]
        for name, root in steps if rep % 2 == 0 else reversed(steps):  # ABBA: load hits all
            if root is None:
                seeds = [t.seed for t in tasks]
                bare.runs.append(bare_rate(ctx["src"], entrypoint, config, seeds, plan.workers))
            else:
                ours[name].runs.append(asyncio.run(_runner_rate(ctx, root, tasks, plan.workers)))
        log.info(
            "bench.runner_rep",
            model=label,
            rep=rep,
            bare=bare.runs[-1],
            **{k: v.runs[-1] for k, v in ours.items()},
        )
    return ours, bare


def _median_split(figures: Figures) -> dict[str, float]:
    """Median CPU ms per task of each process kind across repetitions."""
    splits = [r.split for r in figures.runs if r.split]
    return {k: Samples(tuple(s[k] for s in splits)).median for k in splits[0]} if splits else {}


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


def paired_efficiency(ours: Figures, bare: Figures) -> Samples:
    """Each repetition's tasks/s over the bare loop's of the same repetition; pure.

    The two runs of a repetition are seconds apart, so a change of speed of a shared
    machine (other tenants, clock) between repetitions cancels out of each ratio, where it
    does not out of a ratio of the two medians.
    """
    return Samples(
        tuple(_ratio(o.per_s, b.per_s) for o, b in zip(ours.runs, bare.runs, strict=True))
    )


def _overhead_ms(ours: Samples, bare: Samples, workers: int) -> float:
    return workers * (1 / ours.median - 1 / bare.median) * 1000


def _figures(
    title: str, ours: Figures, bare: Figures, *, workers: int, notes: str, targeted: bool
) -> list[Result]:
    paired = paired_efficiency(ours, bare)
    efficiency = [
        Result(
            f"runner efficiency, {title}",
            value=paired.median,
            unit="x",
            baseline="bare loop of the same repetition",
            baseline_value=1.0,
            target=EFFICIENCY_TARGET,
            notes=notes + "; median of each repetition's tasks/s ratio (ours / bare loop)",
            samples=paired.values,
        )
    ]
    return [
        *(efficiency if targeted else []),
        Result.compare(
            f"runner tasks/s, {title}",
            ours.rate,
            bare.rate,
            unit="tasks/s",
            baseline_name="bare loop, same processes",
            notes=notes + "; ratio = efficiency from the medians",
        ),
        Result(
            f"runner time per task per worker slot, {title}",
            value=workers * 1000 / ours.rate.median,
            unit="ms",
            baseline="bare loop, same processes",
            baseline_value=workers * 1000 / bare.rate.median,
            notes=f"overhead {_overhead_ms(ours.rate, bare.rate, workers):.2f} ms per task "
            "= workers x (1/ours - 1/bare): what a worker slot loses per task",
        ),
        Result.compare(
            f"CPU per task, {title}",
            ours.cpu,
            bare.cpu,
            unit="ms",
            baseline_name="bare loop's simulate calls",
            target=CPU_TARGET if targeted else None,
            notes="runner + workers + nats-server, first to last completion; "
            "1/ratio = CPU efficiency, steadier than tasks/s under other people's load",
        ),
    ]


def run(args: BenchArgs) -> list[Result]:
    workers = args.option("workers", usable_cores(), int)
    plan = Plan(
        workers=workers,
        noop_tasks=args.option("noop_tasks", args.pick(full=2000, quick=1000, smoke=50), int),
        sir_tasks=args.option(
            "sir_tasks", args.pick(full=100 * workers, quick=60 * workers, smoke=10), int
        ),
        reps=args.reps(full=3, quick=1, smoke=1),
        sir_reps=args.reps(full=5, quick=1, smoke=1),
        sir_task_ms=args.option("sir_task_ms", 20.0, float),
    )
    folder = args.folder("runner")
    project = _project(folder)
    layout = folder / "oci"
    nats = args.servers.nats()
    ctx = {
        "folder": folder,
        "layout": layout,
        "bundle_ref": _push(project, layout),
        "nats_url": nats.url,
        "nats_pid": nats.process.pid,
        "src": project / "src",
    }
    stores = {"disk": folder}
    if TMPFS.is_dir() and os.access(TMPFS, os.W_OK):
        stores["tmpfs"] = TMPFS
    days = _calibrate_days(project / "src", plan.sir_task_ms)
    noop_ours, noop_bare = _measure(
        label="noop",
        entrypoint=NOOP,
        config={},
        n_tasks=plan.noop_tasks,
        plan=plan,
        ctx=ctx,
        stores={"disk": folder},
        reps=plan.reps,
    )
    sir_ours, sir_bare = _measure(
        label="sir",
        entrypoint=SIR,
        config={"days": days},
        n_tasks=plan.sir_tasks,
        plan=plan,
        ctx=ctx,
        stores=stores,
        reps=plan.sir_reps,
    )
    where = f"{workers} workers, {plan.reps} reps"
    results = _figures(
        "no-op model",
        noop_ours["disk"],
        noop_bare,
        workers=workers,
        notes=f"{plan.noop_tasks} tasks, {where}, blobs on disk",
        targeted=False,
    )
    model_ms = sir_bare.cpu.median
    for name, figures in sir_ours.items():
        results += _figures(
            f"SIR ~{model_ms:.0f} ms, blobs on {name}",
            figures,
            sir_bare,
            workers=workers,
            notes=f"{plan.sir_tasks} tasks, days={days}, {workers} workers, {plan.sir_reps} reps",
            targeted=True,
        )
    lines = [
        f"runner: {workers} workers; no-op: overhead "
        f"{_overhead_ms(noop_ours['disk'].rate, noop_bare.rate, workers):.2f} ms/task, "
        f"CPU {noop_ours['disk'].cpu.median:.2f} ms/task ("
        + ", ".join(f"{k} {v:.2f}" for k, v in _median_split(noop_ours["disk"]).items())
        + ")"
    ]
    for name, f in sir_ours.items():
        lines.append(
            f"runner: SIR at {model_ms:.1f} ms/task (days={days}), blobs on {name}: "
            f"efficiency {paired_efficiency(f, sir_bare).median:.3f} (paired), "
            f"{f.rate.median / sir_bare.rate.median:.3f} (medians), "
            f"{_ratio(sir_bare.cpu.median, f.cpu.median):.3f} (CPU); overhead "
            f"{_overhead_ms(f.rate, sir_bare.rate, workers):.2f} ms/task, "
            f"CPU {f.cpu.median - sir_bare.cpu.median:.2f} ms/task more ("
            + ", ".join(f"{k} {v:.2f}" for k, v in _median_split(f).items())
            + " ms/task)"
        )
    print("\n".join(lines), file=sys.stderr)
    return results
