"""Runner benchmark (issue 5): tasks/s of `python -m modelops_runner` vs a bare loop, same cores.

Two models from one bundle of the StochasticSIR example project: a no-op (the runner's own
per-task cost) and the example's StochasticSIR with `days` calibrated to ~20 ms per call.

- ours: a job queued the way the submitter queues it (spec.json, the runners-<job_id>
  consumer, one message per task), then one runner process with one worker per usable core,
  against real nats-server, an OCI image-layout bundle and a file:// blob store: each task is
  fetched, run in a worker, converted to Parquet, stored with its record, reported as
  TaskCompleted (PubAck awaited) and acked. Throughput is measured between the first and the
  last TaskCompleted seen on the bus (steady state: process and pool start-up excluded);
- baseline: the same number of processes (multiprocessing, spawn), each importing the same
  model from the same folder, building it once, and calling `simulate(params, seed)` in a
  plain loop, each taking the next seed as it finishes one (`BarePool`), timed from a common
  start to the last one done.

Per-task overhead is workers x (1/ours - 1/baseline), in ms: the time one worker slot loses per
task to everything that is not the model. Target: ours ≥ 0.95 of the baseline on ~20 ms tasks,
as the median over repetitions of each repetition's own ratio (its runner runs and its bare
loop are seconds apart, so a shared machine's drift in speed between repetitions cancels).

The SIR repetitions keep their processes: one runner per blob-store folder (`RunnerSession`:
its job waits for more tasks, as while a submitter still enqueues) gets each repetition's
tasks as a burst, and the bare pool runs the same seeds. Start-ups are paid once, so there
is time for ten repetitions; a first, uncounted one warms all up. The runner's rate skips a
burst's first tenth, which overlaps its publishing.

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


def _bare_worker_loop(
    src: str, entrypoint: str, config: dict, inbox: Any, start: Any, out: Any, next_seed: Any
) -> None:
    sys.path.insert(0, src)
    module, _, cls = entrypoint.partition(":")
    model_cls = getattr(__import__(module), cls)
    instance = model_cls()
    instance.config = {**getattr(model_cls, "config", {}), **config}
    out.put("ready")
    while (seeds := inbox.get()) is not None:
        start.wait()
        t0, c0 = time.perf_counter(), time.process_time()
        while True:
            with next_seed.get_lock():
                i = next_seed.value
                next_seed.value = i + 1
            if i >= len(seeds):
                break
            instance.simulate({"beta": 0.05}, seeds[i])
        out.put((time.perf_counter() - t0, time.process_time() - c0))


class BarePool:
    """The baseline: `workers` processes, each importing the same model from the same folder,
    building it once and calling `simulate(params, seed)` in a plain loop (the best these
    cores can do). They stay alive across repetitions, every run starts them together, and
    each takes the next seed as it finishes one, as the runner's workers are fed: with a
    fixed share of the seeds each, the slower share set the rate (a stochastic model's time
    depends on the seed), noise of up to ~5% per repetition the runner's rate did not share."""

    def __init__(self, src: Path, entrypoint: str, config: dict, workers: int) -> None:
        ctx = mp.get_context("spawn")
        self._start = ctx.Barrier(workers + 1)
        self._out = ctx.Queue()
        self._next_seed = ctx.Value("q", 0)
        self._inboxes = [ctx.Queue() for _ in range(workers)]
        saved = {k: os.environ.get(k) for k in _THREAD_ENV}
        os.environ.update(_THREAD_ENV)  # as the pool's workers run: one thread each
        try:
            self._procs = [
                ctx.Process(
                    target=_bare_worker_loop,
                    args=(
                        str(src),
                        entrypoint,
                        config,
                        inbox,
                        self._start,
                        self._out,
                        self._next_seed,
                    ),
                )
                for inbox in self._inboxes
            ]
            for p in self._procs:
                p.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        for _ in self._procs:
            assert self._out.get(timeout=120) == "ready"

    def run(self, seeds: list[int]) -> Rate:
        self._next_seed.value = 0
        for inbox in self._inboxes:
            inbox.put(seeds)
        self._start.wait(timeout=120)  # every process has the seeds: all start now
        timings = [self._out.get(timeout=600) for _ in self._procs]
        slowest = max(wall for wall, _ in timings)
        return Rate(
            per_s=len(seeds) / slowest, cpu_ms=1000 * sum(c for _, c in timings) / len(seeds)
        )

    def close(self) -> None:
        for inbox in self._inboxes:
            inbox.put(None)
        for p in self._procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()


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


async def _queue(
    nc: Any,
    store: Any,
    bundle_ref: str,
    tasks: list[SimTask],
    *,
    entrypoint: str = "",
    more_to_come: bool = False,
) -> tuple[str, str]:
    """What the submitter does before launching runners; returns (job_id, spec URI).

    `more_to_come`: the spec names an enqueued marker that is not written yet, so the runner
    waits on an empty queue for more tasks (`RunnerSession`) instead of leaving.
    """
    js = nc.jetstream()
    await ensure_jetstream(js)
    job_id = f"bench-{uuid.uuid4().hex[:10]}"
    spec = JobSpec(
        job_id=job_id,
        bundle_ref=bundle_ref,
        entrypoints=[entrypoint or tasks[0].entrypoint],
        n_tasks=len(tasks),
        task_subject=task_subject(job_id),
        consumer=f"runners-{job_id}",
        options=LaunchOptions(task_timeout_s=600),
        enqueued_marker=blob_keys.job_enqueued(job_id) if more_to_come else "",
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
    await _publish(js, job_id, tasks)
    return job_id, spec_uri


async def _publish(js: Any, job_id: str, tasks: list[SimTask]) -> None:
    for i in range(0, len(tasks), 1000):
        await asyncio.gather(
            *(
                js.publish(
                    task_subject(job_id),
                    encode(t),
                    headers={"Nats-Msg-Id": f"{job_id}:{t.task_id}"},
                )
                for t in tasks[i : i + 1000]
            )
        )


def _runner_env(
    ctx: dict[str, Any], job_id: str, spec_uri: str, blobs: Path, workers: int
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELOPS_", "AWS_"))}
    env.update(
        MODELOPS_NATS_URL=ctx["nats_url"],
        MODELOPS_JOB_ID=job_id,
        MODELOPS_JOB_SPEC=spec_uri,
        MODELOPS_BLOB_STORE=f"file://{blobs}",
        MODELOPS_BUNDLE_STORE=f"oci-layout:{ctx['layout']}",
        MODELOPS_BUNDLE_CACHE=str(ctx["folder"] / "bundle-cache"),
        MODELOPS_WORKERS=str(workers),
        MODELOPS_LOG_FORMAT="json",
        MODELOPS_LOG_LEVEL="WARNING",
    )
    return env


async def _runner_rate(
    ctx: dict[str, Any], blobs_root: Path, tasks: list[SimTask], workers: int
) -> Rate:
    """Steady-state tasks/s of one runner process draining `tasks`, blobs under `blobs_root`."""
    folder, bundle_ref = ctx["folder"], ctx["bundle_ref"]
    blobs = blobs_root / f"modelops-bench-blobs-{uuid.uuid4().hex[:8]}"
    store = open_blob_store(f"file://{blobs}")
    nc = await connect(ctx["nats_url"], name="bench-runner")
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
        env = _runner_env(ctx, job_id, spec_uri, blobs, workers)
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


class RunnerSession:
    """One runner process kept alive across bursts of tasks (SIR repetitions).

    Its job's spec names an enqueued marker that is written only at the end, so between
    bursts the runner waits on the empty queue, as it does while a submitter still
    enqueues. Process, bundle and pool start once, not once per repetition, which leaves
    time for more repetitions, each a few seconds from its bare loop. The runner's own
    per-task work is the same as in a one-job run: tasks are fetched, run, stored, reported
    and acked one burst after another.
    """

    def __init__(self, ctx: dict[str, Any], blobs_root: Path, workers: int, entrypoint: str):
        self._ctx, self._workers, self._entrypoint = ctx, workers, entrypoint
        self._blobs = blobs_root / f"modelops-bench-blobs-{uuid.uuid4().hex[:8]}"
        self._store = open_blob_store(f"file://{self._blobs}")
        self._finished: list[float] = []
        self._cpu: list[dict[str, float]] = []
        self._expected = 0
        self._failed: list[str] = []
        self._done = asyncio.Event()

    async def __aenter__(self) -> RunnerSession:
        ctx = self._ctx
        self._nc = await connect(ctx["nats_url"], name="bench-runner-session")
        self._js = self._nc.jetstream()
        self.job_id, spec_uri = await _queue(
            self._nc,
            self._store,
            ctx["bundle_ref"],
            [],
            entrypoint=self._entrypoint,
            more_to_come=True,
        )
        self._subs = [
            await self._nc.subscribe(
                job_event_subject(self.job_id, "task_completed"), cb=self._on_completed
            ),
            await self._nc.subscribe(
                job_event_subject(self.job_id, "task_failed"), cb=self._on_failed
            ),
        ]
        self._log_file = ctx["folder"] / f"runner-{self.job_id}.log"
        self._log_fh = await asyncio.to_thread(open, self._log_file, "wb")
        env = _runner_env(ctx, self.job_id, spec_uri, self._blobs, self._workers)
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "modelops_runner",
            env=env,
            stdout=self._log_fh,
            stderr=self._log_fh,
        )
        return self

    async def _on_completed(self, msg: Any) -> None:
        self._finished.append(dt.datetime.fromisoformat(decode_event(msg.data).time).timestamp())
        if len(self._finished) == self._expected:
            self._cpu.append(_cpu_split(self._proc.pid, self._ctx["nats_pid"]))
            self._done.set()

    async def _on_failed(self, msg: Any) -> None:
        self._failed.append(msg.data.decode(errors="replace")[:500])
        self._done.set()

    async def burst(self, tasks: list[SimTask], *, warmup: int = 0) -> Rate:
        """Queue `tasks` and measure their steady rate, from the (warmup+1)-th to the last
        task to finish (the first ones overlap the publishing). CPU is counted from when
        every task is queued (the runner's idle time between bursts is not) to the last
        event, over the tasks that finished in that time."""
        self._finished, self._cpu = [], []
        self._expected = len(tasks)
        self._done.clear()
        await _publish(self._js, self.job_id, tasks)
        self._cpu.append(_cpu_split(self._proc.pid, self._ctx["nats_pid"]))
        queued_at = time.time()
        exited = asyncio.ensure_future(self._proc.wait())
        all_done = asyncio.ensure_future(self._done.wait())
        try:
            async with asyncio.timeout(600):
                await asyncio.wait({exited, all_done}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            exited.cancel()
            all_done.cancel()
        if self._failed or len(self._finished) < len(tasks):
            raise RuntimeError(
                f"runner session {self.job_id}: {len(self._finished)} of {len(tasks)} tasks "
                f"completed, failures {self._failed[:3]}, exit {self._proc.returncode}: "
                f"{self._log_file.read_text()[-2000:]}"
            )
        return _steady_rate(self._finished, self._cpu, cpu_from=queued_at, warmup=warmup)

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self._proc.returncode is None:  # every task is queued now: the runner leaves
                await self._store.put_bytes(blob_keys.job_enqueued(self.job_id), b"{}")
                try:
                    async with asyncio.timeout(60):
                        status = await self._proc.wait()
                except TimeoutError:
                    status = None
                if status != 0 and exc == (None, None, None):
                    raise RuntimeError(
                        f"runner session {self.job_id} exited {status}: "
                        f"{self._log_file.read_text()[-2000:]}"
                    )
        finally:
            if self._proc.returncode is None:
                self._proc.kill()
                await self._proc.wait()
            self._log_fh.close()
            for sub in self._subs:
                await sub.unsubscribe()
            await self._nc.close()
            shutil.rmtree(self._blobs, ignore_errors=True)


def _steady_rate(
    finished: list[float], cpu: list[dict[str, float]], *, cpu_from: float, warmup: int = 0
) -> Rate:
    """Rate and CPU per task between the (warmup+1)-th and the last task to finish; pure.

    Times are the events' own: when each task came back from its worker. The runner reports
    results in batches, so the arrival of the first event already covers a batch of tasks:
    the CPU counted from that moment on is divided by the tasks that finished after it.
    """
    finished = sorted(finished)
    n = len(finished)
    first = min(warmup, n - 2) if n > 1 else 0
    per_s = (n - 1 - first) / max(finished[-1] - finished[first], 1e-9)
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


@dataclass(frozen=True)
class Case:
    """One model's repetitions: which tasks, how many, how often."""

    label: str
    entrypoint: str
    config: dict
    n_tasks: int
    reps: int

    def tasks(self, bundle_ref: str, rep: int) -> list[SimTask]:
        """The repetition's tasks: its own seeds, the same for the runners and the bare loop."""
        return _tasks(bundle_ref, self.entrypoint, self.n_tasks, self.config, (rep + 2) * 10**6)

    def log_rep(self, rep: int, ours: dict[str, Figures], bare: Figures) -> None:
        log.info(
            "bench.runner_rep",
            model=self.label,
            rep=rep,
            bare=bare.runs[-1],
            **{k: v.runs[-1] for k, v in ours.items()},
        )


def _abba(steps: list[str], rep: int) -> list[str]:
    """The steps of a repetition, reversed every other one: a drift in load hits all alike."""
    return steps if rep % 2 == 0 else steps[::-1]


def _measure(
    case: Case, plan: Plan, ctx: dict[str, Any], stores: dict[str, Path]
) -> tuple[dict[str, Figures], Figures]:
    """Runner rates per blob-store folder (a runner process per run), and the bare rate."""
    ours: dict[str, Figures] = {name: Figures([]) for name in stores}
    bare = Figures([])
    pool = BarePool(ctx["src"], case.entrypoint, case.config, plan.workers)
    try:
        for rep in range(case.reps):
            tasks = case.tasks(ctx["bundle_ref"], rep)
            for name in _abba([*stores, "bare"], rep):
                if name == "bare":
                    bare.runs.append(pool.run([t.seed for t in tasks]))
                else:
                    rate = asyncio.run(_runner_rate(ctx, stores[name], tasks, plan.workers))
                    ours[name].runs.append(rate)
            case.log_rep(rep, ours, bare)
    finally:
        pool.close()
    return ours, bare


async def _measure_in_sessions(
    case: Case, plan: Plan, ctx: dict[str, Any], stores: dict[str, Path]
) -> tuple[dict[str, Figures], Figures]:
    """As _measure, with one long-lived runner per blob-store folder: each repetition is a
    burst of the same tasks on each runner and one bare run."""
    ours: dict[str, Figures] = {name: Figures([]) for name in stores}
    bare = Figures([])
    pool = await asyncio.to_thread(BarePool, ctx["src"], case.entrypoint, case.config, plan.workers)
    try:
        async with contextlib.AsyncExitStack() as stack:
            sessions = {
                name: await stack.enter_async_context(
                    RunnerSession(ctx, root, plan.workers, case.entrypoint)
                )
                for name, root in stores.items()
            }
            for rep in range(-1, case.reps):  # rep -1 warms every runner up, uncounted
                tasks = case.tasks(ctx["bundle_ref"], rep)
                for name in _abba([*stores, "bare"], rep):
                    if name == "bare":
                        rate = await asyncio.to_thread(pool.run, [t.seed for t in tasks])
                    else:
                        rate = await sessions[name].burst(tasks, warmup=case.n_tasks // 10)
                    if rep >= 0:
                        (bare if name == "bare" else ours[name]).runs.append(rate)
                if rep >= 0:
                    case.log_rep(rep, ours, bare)
    finally:
        await asyncio.to_thread(pool.close)
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
        sir_reps=args.reps(full=10, quick=2, smoke=1),
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
    noop = Case("noop", NOOP, {}, plan.noop_tasks, plan.reps)
    noop_ours, noop_bare = _measure(noop, plan, ctx, {"disk": folder})
    sir = Case("sir", SIR, {"days": days}, plan.sir_tasks, plan.sir_reps)
    sir_ours, sir_bare = asyncio.run(_measure_in_sessions(sir, plan, ctx, stores))
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
