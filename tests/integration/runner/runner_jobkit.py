"""Test helpers for the runner: a bundle, a job queued the way the submitter queues it, and
real `python -m modelops_runner` processes.

This is not the submitter: it does exactly what docs/architecture.md says the submitter does
before launching runners (spec.json to the blob store, the durable `runners-<job_id>` pull
consumer, one task message per task with Nats-Msg-Id `<job_id>:<task_id>`), no more.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from modelops_bundle.push import push_bundle
from modelops_bundle.registration import register_model
from modelops_bundle.registry_file import dump_registry, load_registry
from modelops_bundle.stores import open_store
from modelops_contracts import LaunchOptions, SimTask, decode_event, encode
from modelops_contracts.jobs import JobSpec, blob_keys
from modelops_contracts.messages import Event, TaskCompleted, TaskFailed
from modelops_contracts.subjects import EVENTS_STREAM, TASKS_STREAM, job_events_filter, task_subject
from modelops_runtime.blobstore import BlobStore
from modelops_runtime.nats_setup import ensure_jetstream

__all__ = [
    "EXAMPLE_SIR",
    "FIXTURE_MODELS",
    "QueuedJob",
    "RunnerProcess",
    "build_bundle",
    "completions",
    "failures",
    "queue_job",
    "read_job_events",
    "runner_env",
    "wait_for",
    "wait_for_async",
]

REPO = Path(__file__).resolve().parents[3]
FIXTURE_MODELS = REPO / "tests" / "fixtures" / "models"
EXAMPLE_SIR = REPO / "examples" / "sir"


def build_bundle(
    project: Path,
    models: Mapping[str, str],
    *,
    store_location: str,
    repository: str | None = None,
    extra_files: Mapping[str, bytes] | None = None,
    copy_from: Path | None = None,
    data: Iterable[str] = (),
) -> str:
    """Register `models` (entrypoint -> project-relative file) and push; return the bundle ref.

    Model files default to tests/fixtures/models/<name> copied under `src/`, so the runner
    must work out the import root `src/` from the bundle index.
    """
    if copy_from is not None:
        shutil.copytree(copy_from, project)
    project.mkdir(parents=True, exist_ok=True)
    for path in models.values():
        dest = project / path
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(FIXTURE_MODELS / Path(path).name, dest)
    for rel, content in (extra_files or {}).items():
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_bytes(content)
    for entrypoint, path in models.items():
        register_model(project, entrypoint, path, data=list(data))
    registry = load_registry(project)
    store = open_store(store_location)
    result = push_bundle(
        project,
        registry,
        store,
        repository=repository or f"test/runner-{uuid.uuid4().hex[:10]}",
        registry_yaml=dump_registry(registry),
    )
    return result.bundle.bundle_ref


@dataclass
class QueuedJob:
    job_id: str
    spec_uri: str
    tasks: list[SimTask]
    consumer: str

    @property
    def task_ids(self) -> set[str]:
        return {t.task_id for t in self.tasks}


async def queue_job(
    nc: nats.NATS,
    store: BlobStore,
    *,
    bundle_ref: str,
    tasks: list[SimTask],
    options: LaunchOptions | None = None,
    ack_wait_s: float = 30.0,
    max_deliver: int = 3,
    job_id: str | None = None,
    raw_messages: Iterable[bytes] = (),
) -> QueuedJob:
    """spec.json, consumer `runners-<job_id>`, then one message per task (and any raw ones)."""
    js = nc.jetstream()
    await ensure_jetstream(js)
    job_id = job_id or f"job-{uuid.uuid4().hex[:12]}"
    consumer = f"runners-{job_id}"
    spec = JobSpec(
        job_id=job_id,
        bundle_ref=bundle_ref,
        entrypoints=sorted({t.entrypoint for t in tasks}),
        n_tasks=len(tasks),
        task_subject=task_subject(job_id),
        consumer=consumer,
        options=options or LaunchOptions(),
    )
    spec_uri = await store.put_bytes(blob_keys.job_spec(job_id), encode(spec))
    await js.add_consumer(
        TASKS_STREAM,
        ConsumerConfig(
            durable_name=consumer,
            filter_subject=task_subject(job_id),
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait_s,
            max_deliver=max_deliver,
            max_ack_pending=1000,
        ),
    )
    publishes = [
        js.publish(
            task_subject(job_id), encode(t), headers={"Nats-Msg-Id": f"{job_id}:{t.task_id}"}
        )
        for t in tasks
    ]
    publishes += [js.publish(task_subject(job_id), raw) for raw in raw_messages]
    await asyncio.gather(*publishes)
    return QueuedJob(job_id=job_id, spec_uri=spec_uri, tasks=tasks, consumer=consumer)


def runner_env(
    *,
    nats_url: str,
    job: QueuedJob,
    blob_store: str,
    bundle_store: str,
    cache: Path,
    workers: int = 2,
    s3: object | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MODELOPS_") and not k.startswith("AWS_")
    }
    env.update(
        MODELOPS_NATS_URL=nats_url,
        MODELOPS_JOB_ID=job.job_id,
        MODELOPS_JOB_SPEC=job.spec_uri,
        MODELOPS_BLOB_STORE=blob_store,
        MODELOPS_BUNDLE_STORE=bundle_store,
        MODELOPS_BUNDLE_CACHE=str(cache),
        MODELOPS_WORKERS=str(workers),
        MODELOPS_LOG_FORMAT="json",
        MODELOPS_LOG_LEVEL="INFO",
    )
    if s3 is not None:
        env.update(
            MODELOPS_S3_ENDPOINT=s3.endpoint_url,  # type: ignore[attr-defined]
            AWS_ACCESS_KEY_ID=s3.access_key,  # type: ignore[attr-defined]
            AWS_SECRET_ACCESS_KEY=s3.secret_key,  # type: ignore[attr-defined]
        )
    env.update(extra or {})
    return env


@dataclass
class RunnerProcess:
    """One `python -m modelops_runner` in its own session, logging to a file."""

    env: dict[str, str]
    log_path: Path
    process: asyncio.subprocess.Process | None = None
    _log: object = field(default=None, repr=False)

    async def start(self) -> RunnerProcess:
        self._log = open(self.log_path, "wb")  # noqa: ASYNC230 - a local log file, once
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "modelops_runner",
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def wait(self, timeout_s: float = 60.0) -> int:
        assert self.process is not None
        try:
            async with asyncio.timeout(timeout_s):
                return await self.process.wait()
        except TimeoutError:
            self.kill()
            await self.process.wait()
            raise AssertionError(
                f"runner did not exit within {timeout_s} s; log:\n{self.log()[-4000:]}"
            ) from None
        finally:
            self._close_log()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the runner alone (its workers have their own sessions; they die with it)."""
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, sig)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()  # type: ignore[attr-defined]
            self._log = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def aclose(self) -> None:
        """Kill whatever is left and reap it (test teardown)."""
        if self.process is not None and self.process.returncode is None:
            self.kill()
            await self.process.wait()
        self._close_log()


async def read_job_events(nc: nats.NATS, job_id: str) -> list[Event]:
    """Every event JetStream stored for `job_id` (after deduplication), in stream order."""
    js = nc.jetstream()
    psub = await js.pull_subscribe(
        job_events_filter(job_id),
        stream=EVENTS_STREAM,
        config=ConsumerConfig(
            deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE, inactive_threshold=30
        ),
    )
    events: list[Event] = []
    try:
        while (await psub.consumer_info()).num_pending:
            for msg in await psub.fetch(500, timeout=2):
                events.append(decode_event(msg.data))
    finally:
        await psub.unsubscribe()
    return events


def completions(events: list[Event]) -> Counter[str]:
    return Counter(e.task_id for e in events if isinstance(e, TaskCompleted))


def failures(events: list[Event]) -> dict[str, TaskFailed]:
    return {e.task_id: e for e in events if isinstance(e, TaskFailed)}


async def wait_for(
    predicate: Callable[[], bool], what: str, *, timeout_s: float = 30.0, poll_s: float = 0.05
) -> None:
    """Poll `predicate` until it holds, or fail naming `what` (a deadline poll, not a sleep)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(poll_s)


async def wait_for_async(
    probe: Callable[[], Awaitable[int]], what: str, *, minimum: int, timeout_s: float = 30.0
) -> None:
    """Poll an async probe until it returns at least `minimum` (a deadline poll, not a sleep)."""
    deadline = time.monotonic() + timeout_s
    while await probe() < minimum:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)
