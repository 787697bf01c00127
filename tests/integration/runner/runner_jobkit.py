"""Test helpers for the runner: a bundle, a job queued the way the submitter queues it, and
real `python -m modelops_runner` processes.

This is not the submitter: it does exactly what docs/architecture.md says the submitter does
before launching runners (spec.json to the blob store, the durable `runners-<job_id>` pull
consumer, one task message per task with Nats-Msg-Id `<job_id>:<task_id>`), no more.

A test states what is particular to it; the rest is a `JobSite`'s defaults:

    site = JobSite(tmp_path, nats_server.url)  # OCI layout + blob folder under tmp_path
    tasks = sir_tasks(site.bundle(), range(6))
    job = await site.queue(nats_client, tasks)
    runner = await site.run(job)  # start, wait for the exit, reap
    assert runner.returncode == 0, runner.log()[-3000:]
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from modelops_bundle.push import push_bundle
from modelops_bundle.registration import register_model
from modelops_bundle.registry_file import dump_registry, load_registry
from modelops_bundle.stores import open_store
from modelops_contracts import LaunchOptions, ParameterSet, SimTask, decode_event, encode
from modelops_contracts.jobs import JobSpec, blob_keys
from modelops_contracts.messages import Event, TaskCompleted, TaskFailed
from modelops_contracts.subjects import EVENTS_STREAM, TASKS_STREAM, job_events_filter, task_subject
from modelops_runner.results import ResultRecord, find_result
from modelops_runtime.blobstore import BlobStore, open_blob_store
from modelops_runtime.nats_setup import ensure_jetstream

__all__ = [
    "EXAMPLE_SIR",
    "FIXTURE_MODELS",
    "SIR",
    "SIR_MODELS",
    "JobSite",
    "QueuedJob",
    "RunnerProcess",
    "build_bundle",
    "completions",
    "failures",
    "queue_job",
    "read_job_events",
    "runner_env",
    "sir_tasks",
]

REPO = Path(__file__).resolve().parents[3]
FIXTURE_MODELS = REPO / "tests" / "fixtures" / "models"
EXAMPLE_SIR = REPO / "examples" / "sir"
SIR = "sir_model:StochasticSIR"
SIR_MODELS = {SIR: "src/sir_model.py"}  # the fixture model, under src/ in the project


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


def sir_tasks(
    bundle_ref: str,
    seeds: Iterable[int],
    *,
    beta: float = 0.3,
    config: Mapping[str, Any] | None = None,
) -> list[SimTask]:
    """One StochasticSIR task per seed, all with the same `beta` and model `config`."""
    params = ParameterSet(params={"beta": beta})
    extra = {"config": dict(config)} if config is not None else {}
    return [
        SimTask(bundle_ref=bundle_ref, entrypoint=SIR, params=params, seed=seed, **extra)
        for seed in seeds
    ]


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

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.returncode

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


async def stored_record(store: BlobStore, task_id: str) -> ResultRecord:
    """The task's stored record, read as the runner reads it (its key may hold a record set)."""
    record = await find_result(store, task_id)
    assert record is not None, f"no record of task {task_id}"
    return record


def completions(events: list[Event]) -> Counter[str]:
    return Counter(e.task_id for e in events if isinstance(e, TaskCompleted))


def failures(events: list[Event]) -> dict[str, TaskFailed]:
    return {e.task_id: e for e in events if isinstance(e, TaskFailed)}


@dataclass
class JobSite:
    """Where one test's jobs live: its NATS, bundle store, blob store and the runners' cache.

    Defaults are the embedded stack's: an OCI image-layout folder and a blob folder under
    `tmp_path`; a test on a registry or S3 names those (and `s3`, the server whose endpoint and
    keys the runners get). Runner logs go to `tmp_path/<name>.log`.
    """

    tmp_path: Path
    nats_url: str
    bundle_store: str = ""
    blob_uri: str = ""
    store: BlobStore | None = None  # default: opened on blob_uri
    s3: object | None = None

    def __post_init__(self) -> None:
        self.bundle_store = self.bundle_store or f"oci-layout:{self.tmp_path / 'oci'}"
        self.blob_uri = self.blob_uri or f"file://{self.tmp_path / 'blobs'}"
        if self.store is None:
            self.store = open_blob_store(self.blob_uri)

    @property
    def blobs(self) -> BlobStore:
        assert self.store is not None  # set in __post_init__
        return self.store

    def bundle(
        self, models: Mapping[str, str] = SIR_MODELS, *, project: str = "project", **kw: Any
    ) -> str:
        """build_bundle of `tmp_path/<project>` into this site's bundle store."""
        return build_bundle(self.tmp_path / project, models, store_location=self.bundle_store, **kw)

    async def queue(
        self, nc: nats.NATS, tasks: list[SimTask], *, bundle_ref: str | None = None, **kw: Any
    ) -> QueuedJob:
        """queue_job on this site's blob store; the bundle is the tasks' unless named."""
        if bundle_ref is None:
            (bundle_ref,) = {t.bundle_ref for t in tasks}
        return await queue_job(nc, self.blobs, bundle_ref=bundle_ref, tasks=tasks, **kw)

    def env(
        self, job: QueuedJob, *, workers: int = 2, extra: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """The environment of a runner of `job` on this site (see runner_env)."""
        return runner_env(
            nats_url=self.nats_url,
            job=job,
            blob_store=self.blob_uri,
            bundle_store=self.bundle_store,
            cache=self.tmp_path / "cache",
            workers=workers,
            s3=self.s3,
            extra=extra,
        )

    def runner(self, job: QueuedJob, name: str = "runner", **env: Any) -> RunnerProcess:
        """A runner of `job`, not started yet; `env` goes to `env()`."""
        return RunnerProcess(env=self.env(job, **env), log_path=self.tmp_path / f"{name}.log")

    @contextlib.asynccontextmanager
    async def running(
        self, job: QueuedJob, name: str = "runner", **env: Any
    ) -> AsyncIterator[RunnerProcess]:
        """A started runner of `job`, killed and reaped on the way out if still running."""
        runner = await self.runner(job, name, **env).start()
        try:
            yield runner
        finally:
            await runner.aclose()

    async def run(
        self, job: QueuedJob, name: str = "runner", *, timeout_s: float = 60.0, **env: Any
    ) -> RunnerProcess:
        """Start a runner of `job` and return it once it has exited (see `.returncode`)."""
        async with self.running(job, name, **env) as runner:
            await runner.wait(timeout_s)
        return runner
