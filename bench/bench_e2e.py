"""End-to-end benchmark (issue 8): studies through the embedded stack vs Dask's LocalCluster.

- throughput: the same tasks on both engines with the same worker processes (2 x 1 thread
  here; ModelOps: 1 local runner with 2 workers). No-op, ~20 ms SIR and ~500 ms SIR tasks.
  ModelOps is timed from sending SubmitJob to receiving JobCompleted (bench/e2e_modelops.py);
  Dask from `client.map` to the gathered results tables (bench/e2e_dask.py). Figures: tasks/s
  (ratio to Dask), per-task overhead in ms against the ideal n x task_time / workers (ratio
  to Dask's), and tasks/s against that ideal.
- scaling: the no-op study at three sizes (1k, 10k, 100k in full): per-task cost (total and
  without the first task's latency) against the smallest size, and the peak RSS of the stack
  process (submitter, registrar, bundler) and of the runner processes against the smallest.
- latency: SubmitJob to the first TaskCompleted with a warm bundle cache (vs Dask's first
  result on a warm cluster), and with a cold one (the runners' bundle cache removed first).

Run: `python -m bench e2e` (about 6 minutes in full, ~1 minute with --quick).
"""

from __future__ import annotations

import itertools
import shutil
import sys
from pathlib import Path

import structlog

if __package__ in (None, ""):  # `python bench/bench_e2e.py`: run through the harness
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.__main__ import main as _bench_main

    raise SystemExit(_bench_main(["e2e", *sys.argv[1:]]))

from .common import MIB, BenchArgs, Result, Samples, Target
from .e2e_dask import dask_cluster, run_dask
from .e2e_modelops import run_study, sample_memory, study
from .e2e_stack import EXAMPLE, MODELS, NOOP, SIR, BenchStack, bench_stack
from .e2e_workload import SLOW_FACTOR, Workload, calibrate_days, overhead_ms, task_seconds

__all__ = ["run"]

log = structlog.get_logger(__name__)

WORKERS = 2
NOOP_PARAMS = {"x": 0.5}
SIR_PARAMS = {"beta": 0.05, "gamma": 0.1, "I0": 10}
THROUGHPUT_TARGET = Target(">=", 2.0)  # issue 8: at least twice Dask's no-op throughput
FLAT_TARGET = Target("<=", 1.2)  # per-task cost at the largest size vs the smallest
_seeds = itertools.count(1)  # a fresh base seed per job: no task result is ever reused


def _workloads(args: BenchArgs) -> list[Workload]:
    src = EXAMPLE / "src"
    days = calibrate_days(src, SIR, SIR_PARAMS, 0.020)
    slow = {"days": days * SLOW_FACTOR}
    sizes = {
        "noop": args.option("noop_tasks", args.pick(full=10_000, quick=500, smoke=50), int),
        "sir20": args.option("sir_tasks", args.pick(full=2_000, quick=100, smoke=10), int),
        "sir500": args.option("slow_tasks", args.pick(full=100, quick=10, smoke=2), int),
    }
    return [
        Workload(
            "noop",
            NOOP,
            MODELS,
            {},
            NOOP_PARAMS,
            sizes["noop"],
            task_seconds(MODELS, NOOP, {}, NOOP_PARAMS),
        ),
        Workload(
            "sir20",
            SIR,
            src,
            {"days": days},
            SIR_PARAMS,
            sizes["sir20"],
            task_seconds(src, SIR, {"days": days}, SIR_PARAMS),
        ),
        Workload(
            "sir500",
            SIR,
            src,
            slow,
            SIR_PARAMS,
            sizes["sir500"],
            task_seconds(src, SIR, slow, SIR_PARAMS, calls=8),
        ),
    ]


def _throughput(args: BenchArgs, stack: BenchStack, client: object) -> list[Result]:
    results = []
    for w in _workloads(args):
        reps = args.reps(
            full=3 if w.key == "noop" else 1 if w.key == "sir500" else 2,
            quick=2 if w.key == "noop" else 1,
        )
        ours, theirs = [], []
        for i in range(reps):  # ABBA: load bursts land on both engines
            order = ("ours", "dask") if i % 2 == 0 else ("dask", "ours")
            for engine in order:
                if engine == "ours":
                    sim = study(w.entrypoint, w.n_tasks, base_seed=next(_seeds), config=w.config)
                    ours.append(run_study(stack, sim, workers=WORKERS).total_s)
                else:
                    seeds = [next(_seeds) for _ in range(w.n_tasks)]
                    theirs.append(
                        run_dask(client, w.src, w.entrypoint, w.config, w.params, seeds).total_s
                    )
        ideal = w.ideal_s(WORKERS)
        rate = lambda s, n=w.n_tasks: n / s  # noqa: E731
        over = lambda s, w=w, ideal=ideal: overhead_ms(s, ideal, w.n_tasks, WORKERS)  # noqa: E731
        ours_s, theirs_s = Samples(tuple(ours)), Samples(tuple(theirs))
        what = (
            f"{w.n_tasks} tasks of {w.entrypoint} {w.config or ''}, task time "
            f"{w.task_s * 1000:.3g} ms, {WORKERS} workers"
        )
        results += [
            Result.compare(
                f"e2e.{w.key}.throughput",
                ours_s.scaled(rate),
                theirs_s.scaled(rate),
                unit="tasks/s",
                baseline_name="Dask LocalCluster (2 procs x 1 thread)",
                target=THROUGHPUT_TARGET if w.key == "noop" else None,
                notes=f"{what}; SubmitJob->JobCompleted vs client.map->results table",
            ),
            Result.compare(
                f"e2e.{w.key}.overhead",
                ours_s.scaled(over),
                theirs_s.scaled(over),
                unit="ms/task",
                baseline_name="Dask's overhead",
                notes="workers x (total - ideal) / n_tasks; ideal = n x task_time / workers",
            ),
        ]
        if w.key != "noop":
            ideal_rate = Samples((w.n_tasks / ideal,))
            results.append(
                Result.compare(
                    f"e2e.{w.key}.vs_ideal",
                    ours_s.scaled(rate),
                    ideal_rate,
                    unit="tasks/s",
                    baseline_name="ideal (workers / task time)",
                    notes="end to end, runner launch included (bench_runner has steady state)",
                )
            )
    return results


def _scaling(args: BenchArgs, stack: BenchStack) -> list[Result]:
    default = args.pick(full="1000,10000,100000", quick="1000,5000", smoke="100,300")
    sizes = [int(s) for s in args.option("scale_sizes", default, str).split(",")]
    runs = {}
    for n in sizes:
        with sample_memory(stack) as peaks:
            job = run_study(
                stack,
                study(NOOP, n, base_seed=next(_seeds)),
                workers=WORKERS,
                timeout_s=max(600.0, n / 100),
            )
        runs[n] = (job, peaks)
        log.info(
            "bench.e2e.scale",
            tasks=n,
            seconds=round(job.total_s, 2),
            stack_mib=peaks.stack // MIB,
            runners_mib=peaks.runners // MIB,
        )
    base_n = sizes[0]
    base_job, base_peaks = runs[base_n]
    results = []
    for n, (job, peaks) in runs.items():
        per = Samples((job.total_s / n * 1000,))
        steady = Samples(((job.total_s - job.first_task_s) / max(1, n - 1) * 1000,))
        results += [
            Result.compare(
                f"e2e.scale.{n}.per_task",
                per,
                Samples((base_job.total_s / base_n * 1000,)),
                unit="ms/task",
                baseline_name=f"per-task at {base_n}",
                target=FLAT_TARGET if n == sizes[-1] and n != base_n else None,
                notes=f"{n} no-op tasks in {job.total_s:.1f}s (SubmitJob->JobCompleted)",
            ),
            Result.compare(
                f"e2e.scale.{n}.per_task_steady",
                steady,
                Samples(((base_job.total_s - base_job.first_task_s) / max(1, base_n - 1) * 1000,)),
                unit="ms/task",
                baseline_name=f"steady per-task at {base_n}",
                target=FLAT_TARGET if n == sizes[-1] and n != base_n else None,
                notes="first TaskCompleted -> JobCompleted, per task: launch latency excluded",
            ),
            Result.compare(
                f"e2e.scale.{n}.stack_rss",
                Samples((peaks.stack / MIB,)),
                Samples((base_peaks.stack / MIB,)),
                unit="MiB",
                baseline_name=f"stack peak at {base_n}",
                notes="peak RSS of the stack process (registrar+bundler+submitter), psutil 0.1 s",
            ),
            Result.compare(
                f"e2e.scale.{n}.runner_rss",
                Samples((peaks.runners / MIB,)),
                Samples((base_peaks.runners / MIB,)),
                unit="MiB",
                baseline_name=f"runners peak at {base_n}",
                notes="peak summed RSS of the runner process and its 2 workers",
            ),
        ]
    return results


def _latency(args: BenchArgs, stack: BenchStack, client: object) -> list[Result]:
    reps = args.reps(full=3, quick=2)
    warm, cold, dask = [], [], []
    n = 4  # a few tasks: the figure is the first one's latency
    for _ in range(reps):
        shutil.rmtree(stack.bundle_cache, ignore_errors=True)
        cold.append(
            run_study(stack, study(NOOP, n, base_seed=next(_seeds)), workers=WORKERS).first_task_s
        )
        warm.append(
            run_study(stack, study(NOOP, n, base_seed=next(_seeds)), workers=WORKERS).first_task_s
        )
        seeds = [next(_seeds) for _ in range(n)]
        dask.append(run_dask(client, MODELS, NOOP, {}, NOOP_PARAMS, seeds).first_task_s)
    warm_s = Samples(tuple(warm))
    return [
        Result.compare(
            "e2e.latency.warm",
            warm_s,
            Samples(tuple(dask)),
            unit="s",
            baseline_name="Dask first result (warm cluster)",
            notes="SubmitJob -> first TaskCompleted; runner launched per job, bundle cached",
        ),
        Result.compare(
            "e2e.latency.cold",
            Samples(tuple(cold)),
            warm_s,
            unit="s",
            baseline_name="warm bundle cache",
            notes="the runners' bundle cache folder removed before the job",
        ),
    ]


def run(args: BenchArgs) -> list[Result]:
    folder = args.folder("e2e")
    with bench_stack(folder) as stack, dask_cluster(WORKERS) as client:
        results = _throughput(args, stack, client)
        results += _latency(args, stack, client)
        results += _scaling(args, stack)
    return results
