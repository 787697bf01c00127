"""Submitter benchmark (issue 4): enqueue rate of a 100,000-task study, and memory while tracking.

- ours: `python -m modelops_submitter` as its own process (real nats-server, the StochasticSIR
  example bundle in an OCI layout folder, a file:// blob store). The bench sends one SubmitJob
  of a 10,000-set x 10-replicate study and reads the submitter's own `job.submitted` log line
  for the enqueue phase (first publish to last PubAck of the 100,000 task messages); it also
  times SubmitJob -> JobSubmitted end to end (validation, binding, the cache lookup, uploads,
  enqueue). Then the bench plays the runners' part: it drains the job's queue and publishes
  one TaskCompleted per task, pipelined, and the submitter tracks them to JobCompleted (its
  results table included). The submitter's peak RSS (VmHWM, reset when JobSubmitted arrives)
  is the memory it needed while tracking; the peak before the reset covers the submit.
- baseline: in this process, the same task messages (same payloads, same Nats-Msg-Id form)
  pre-encoded, published with `publish_async` under the same in-flight window, timed from the
  first publish to the last PubAck. Bare and ours alternate (ABBA) so load hits both.

Targets: enqueue phase ≥ 0.5 of the bare rate; peak RSS while tracking < 300 MB.
Run: `python -m bench submitter` (about a minute and a half in full).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import structlog

if __package__ in (None, ""):  # `python bench/bench_submitter.py`: run through the harness
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.__main__ import main as _bench_main

    raise SystemExit(_bench_main(["submitter", *sys.argv[1:]]))

import nats

from modelops_bundle.push import push_bundle
from modelops_bundle.registration import register_model
from modelops_bundle.registry_file import dump_registry, load_registry
from modelops_bundle.stores import open_store
from modelops_contracts import (
    JobCompleted,
    JobSubmitted,
    LaunchOptions,
    ParameterSet,
    SimulationStudy,
    SubmitJob,
    TaskCompleted,
    decode_event,
    encode,
)
from modelops_contracts.subjects import TASKS_STREAM, job_events_filter, task_subject
from modelops_runtime.nats_setup import connect, ensure_jetstream

from .common import MIB, BenchArgs, Result, Samples, Target

__all__ = ["run"]

log = structlog.get_logger(__name__)

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "sir"
WINDOW = 2048  # PubAcks in flight: the submitter's default (MODELOPS_PUBLISH_MAX_PENDING)


def _study(n_sets: int, replicates: int) -> SimulationStudy:
    sets = [
        ParameterSet(
            params={
                "beta": round(0.02 + 0.06 * (i % 10) / 10, 6),
                "gamma": round(0.08 + 0.1 * ((i // 10) % 100) / 100, 6),
                "I0": 1 + i // 1000,
            }
        )
        for i in range(n_sets)
    ]
    return SimulationStudy(
        model="model:StochasticSIR", parameter_sets=sets, n_replicates=replicates, name="bench"
    )


def _bundle(folder: Path) -> tuple[str, str]:
    """Push examples/sir to an OCI layout folder: (store location, bundle ref)."""
    project = folder / "sir"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".modelops-bundle"))
    register_model(project, "model:StochasticSIR", "src/model.py", data=["data"])
    registry = load_registry(project)
    location = f"oci-layout:{folder / 'oci'}"
    store = open_store(location)
    try:
        pushed = push_bundle(
            project, registry, store, repository="bench/sir", registry_yaml=dump_registry(registry)
        )
    finally:
        store.close()
    return location, pushed.bundle.bundle_ref


def _reset_peak(pid: int) -> None:
    """Reset the process's VmHWM to its current RSS (Linux >= 4.0)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _status_bytes(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/{pid}/status has no {field}")


async def _bare(nc: nats.NATS, messages: list[tuple[str, bytes]], subject: str) -> float:
    """tasks/s of a pipelined publish loop of pre-encoded messages (then the subject is purged)."""
    js = nc.jetstream(publish_async_max_pending=WINDOW)
    t0 = time.perf_counter()
    for msg_id, payload in messages:
        await js.publish_async(subject, payload, headers={"Nats-Msg-Id": msg_id})
    await js.publish_async_completed()
    rate = len(messages) / (time.perf_counter() - t0)
    await js.purge_stream(TASKS_STREAM, subject=subject)
    return rate


class _Submitter:
    """`python -m modelops_submitter` with a runner command that does nothing."""

    def __init__(self, folder: Path, nats_url: str, bundle_store: str) -> None:
        self.log_path = folder / "submitter.log"
        self.env = {
            **os.environ,
            "MODELOPS_STATE_DIR": str(folder / "state"),
            "MODELOPS_NATS_URL": nats_url,
            "MODELOPS_BLOB_STORE": f"file://{folder / 'blobs'}",
            "MODELOPS_BUNDLE_STORE": bundle_store,
            "MODELOPS_RUNNER_COMMAND": json.dumps([sys.executable, "-c", "pass"]),
            "MODELOPS_LOG_FORMAT": "json",
            "MODELOPS_LOG_LEVEL": "INFO",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> int:
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "modelops_submitter"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self.proc.pid

    def serving(self) -> bool:
        return '"submitter.serving"' in self.log_path.read_text()

    async def wait_ready(self, within: float = 60.0) -> None:
        """Until the submitter logs that it serves (its imports and connections are done)."""
        deadline = time.monotonic() + within
        while not self.serving():
            assert self.proc is not None
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the submitter did not start; see {self.log_path}")
            await asyncio.sleep(0.05)  # polling its log with a deadline

    def logged(self, event: str, job_id: str) -> dict[str, Any]:
        for line in self.log_path.read_text().splitlines():
            if f'"{event}"' in line and job_id in line:
                return json.loads(line)
        raise RuntimeError(f"no {event} for {job_id} in {self.log_path}")

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.wait()


async def _play_runners(nc: nats.NATS, job_id: str, n: int) -> None:
    """Drain the job's queue and report every task completed, pipelined, as runners would."""
    js = nc.jetstream(publish_async_max_pending=WINDOW)
    sub = await js.pull_subscribe_bind(consumer=f"runners-{job_id}", stream=TASKS_STREAM)
    # a fetch waits for its whole batch: ask for no more than the consumer lets one hold
    batch = min(1000, (await sub.consumer_info()).config.max_ack_pending or 1000)
    done = 0
    while done < n:
        try:
            msgs = await sub.fetch(batch, timeout=5)
        except (nats.errors.TimeoutError, TimeoutError):
            continue
        for msg in msgs:
            task_id = msg.headers["Nats-Msg-Id"].split(":", 1)[1]
            event = TaskCompleted(correlation_id="bench", job_id=job_id, task_id=task_id)
            await js.publish_async(event.subject, encode(event), headers={"Nats-Msg-Id": event.id})
            await msg.ack()
        done += len(msgs)
    await js.publish_async_completed()
    await sub.unsubscribe()


async def _ours(
    nc: nats.NATS, sub: _Submitter, study: SimulationStudy, ref: str, n: int
) -> dict[str, float]:
    """One submit of the study; the submitter's figures and its memory."""
    cmd = SubmitJob(
        correlation_id=f"bench-{uuid.uuid4().hex[:8]}",
        bundle_ref=ref,
        study=study,
        options=LaunchOptions(runners=1, workers_per_runner=256),  # 1024 tasks held at once
        idempotency_key=uuid.uuid4().hex,
    )
    events: dict[str, asyncio.Future[Any]] = {
        "submitted": asyncio.get_running_loop().create_future(),
        "completed": asyncio.get_running_loop().create_future(),
    }

    async def on_event(msg: Any) -> None:
        event = decode_event(msg.data)
        if event.correlation_id != cmd.correlation_id:
            return
        key = {JobSubmitted: "submitted", JobCompleted: "completed"}.get(type(event))
        if key and not events[key].done():
            events[key].set_result((time.perf_counter(), event))

    watch = await nc.subscribe(job_events_filter(), cb=on_event)
    assert sub.proc is not None
    idle = _status_bytes(sub.proc.pid, "VmRSS")
    try:
        t0 = time.perf_counter()
        await nc.jetstream().publish(cmd.subject, encode(cmd), headers={"Nats-Msg-Id": cmd.id})
        t1, submitted = await asyncio.wait_for(events["submitted"], 300)
        assert sub.proc is not None
        pid = sub.proc.pid
        submit_peak = _status_bytes(pid, "VmHWM")
        after_submit = _status_bytes(pid, "VmRSS")
        _reset_peak(pid)  # from here on VmHWM is the tracking phase's
        t2 = time.perf_counter()
        await _play_runners(nc, submitted.job_id, n)
        t3 = time.perf_counter()
        _, completed = await asyncio.wait_for(events["completed"], 300)
        t4 = time.perf_counter()
        tracking_peak = _status_bytes(pid, "VmHWM")
    finally:
        await watch.unsubscribe()
    if completed.completed != n:
        raise RuntimeError(f"JobCompleted counted {completed.completed} of {n} tasks")
    logged = sub.logged("job.submitted", submitted.job_id)
    await nc.jetstream().purge_stream(TASKS_STREAM, subject=task_subject(submitted.job_id))
    return {
        "enqueue_rate": float(logged["enqueue_rate"]),
        "submit_rate": n / (t1 - t0),
        "report_rate": n / (t3 - t2),
        "tracking_rate": n / (t4 - t2),
        "submit_peak": float(submit_peak),
        "idle": float(idle),
        "after_submit": float(after_submit),
        "tracking_peak": float(tracking_peak),
    }


async def _bench(
    args: BenchArgs, folder: Path, nats_url: str, n_sets: int, reps: int
) -> list[Result]:
    store_location, ref = _bundle(folder)
    study = _study(n_sets, reps)
    n = n_sets * reps
    job = study.bind(ref, job_id="bench-bare")
    messages = [(f"bench-bare:{t.task_id}", encode(t)) for t in job.tasks()]
    del job
    nc = await connect(nats_url, name="bench-submitter")
    sub = _Submitter(folder, nats_url, store_location)
    bare: list[float] = []
    ours: list[dict[str, float]] = []
    try:
        await ensure_jetstream(nc.jetstream())
        sub.start()
        await sub.wait_ready()
        rounds = args.reps(full=2, quick=1, smoke=1)
        bare.append(await _bare(nc, messages, task_subject("bench-bare-0")))
        for i in range(rounds):
            ours.append(await _ours(nc, sub, study, ref, n))
            bare.append(await _bare(nc, messages, task_subject(f"bench-bare-{i + 1}")))
    finally:
        code = sub.stop()
        await nc.close()
    if code != 0:
        raise RuntimeError(f"the submitter exited with {code}; see {sub.log_path}")
    baseline = Samples(tuple(bare))
    idle = Samples(tuple(o["idle"] / MIB for o in ours))
    return [
        Result.compare(
            "submitter.enqueue",
            Samples(tuple(o["enqueue_rate"] for o in ours)),
            baseline,
            unit="tasks/s",
            baseline_name="bare publish_async loop",
            target=Target(">=", 0.5),
            notes=f"{n} tasks, pipelined with {WINDOW} PubAcks in flight, first publish to "
            "last PubAck",
        ),
        Result.compare(
            "submitter.submit_end_to_end",
            Samples(tuple(o["submit_rate"] for o in ours)),
            baseline,
            unit="tasks/s",
            baseline_name="bare publish_async loop",
            notes=f"{n} tasks, SubmitJob sent -> JobSubmitted received: decode, index check, "
            "bind (task ids), cache lookup, uploads, enqueue, launch",
        ),
        Result.compare(
            "submitter.tracking_rss",
            Samples(tuple(o["tracking_peak"] / MIB for o in ours)),
            idle,
            unit="MiB",
            baseline_name="the submitter's RSS before the submit",
            target=Target("<", 300, on="value"),
            notes=f"{n} tasks, VmHWM of the submitter process from JobSubmitted to "
            "JobCompleted (results table written); peak during the submit "
            f"{max(o['submit_peak'] for o in ours) / MIB:.0f} MiB, RSS when JobSubmitted "
            f"arrived {max(o['after_submit'] for o in ours) / MIB:.0f} MiB",
        ),
        Result.compare(
            "submitter.tracking_rate",
            Samples(tuple(o["tracking_rate"] for o in ours)),
            Samples(tuple(o["report_rate"] for o in ours)),
            unit="tasks/s",
            baseline_name="rate the bench published TaskCompleted",
            notes=f"{n} tasks, first TaskCompleted published -> JobCompleted received "
            "(folding, progress, results table)",
        ),
    ]


def run(args: BenchArgs) -> list[Result]:
    n_sets = args.option("submitter_sets", args.pick(full=10_000, quick=2_000, smoke=50), int)
    reps = args.option("submitter_replicates", 10, int)
    nats_url = args.servers.nats().url
    folder = args.folder("submitter")
    return asyncio.run(_bench(args, folder, nats_url, n_sets, reps))
