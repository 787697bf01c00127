"""Wiring: the one place that builds the runner's real clients and runs the loop.

Order matters for what a failure means: the job spec and the consumer are checked before
the bundle is pulled (a cancelled job exits 0 at once), and the bundle is verified before
any worker starts, so a tampered bundle exits 2 without running a line of model code.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import os
from collections.abc import Mapping

import msgspec
import nats
import nats.errors
import structlog

from modelops_contracts import InvalidMessage, decode
from modelops_contracts.jobs import JobSpec, runner_held_limit
from modelops_contracts.subjects import TASKS_STREAM
from modelops_runtime.blobstore import (
    BlobAccessDenied,
    BlobNotFound,
    BlobStore,
    BlobStoreError,
    BucketNotFound,
    InvalidBlobUri,
    open_blob_store,
)
from modelops_runtime.nats_setup import NatsUnavailable, connect

from .bundle import PreparedBundle, prepare_bundle
from .errors import (
    EXIT_OK,
    BundleRefused,
    ConfigError,
    ConsumerGone,
    InfrastructureError,
    RunnerError,
)
from .pool import WorkerPool, WorkerStartError
from .queue import NatsTaskQueue
from .reporting import JetStreamPublisher
from .runner import LoopConfig, Runner
from .settings import RunnerSettings

__all__ = ["load_spec", "serve", "worker_env"]

log = structlog.get_logger(__name__)

_SECRET_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
_GC_YOUNG_THRESHOLD = 20_000  # allocations between young collections (CPython default: 700)

OUTPUT_COMPRESSION = "snappy"
"""Parquet compression of task outputs, by workers and runner alike. pyarrow's own default:
about 2.5x cheaper per task than zstd on small tables (0.24 vs 0.61 ms for the example's
two outputs), which matters at ~20 ms tasks."""


class _SpecExtras(msgspec.Struct, kw_only=True):
    """Fields a newer JobSpec may carry; read without requiring them."""

    correlation_id: str = ""


def worker_env(env: Mapping[str, str]) -> dict[str, str]:
    """The workers' environment: ours minus the runner's own settings and credentials.

    Model code is untrusted: it gets no NATS credentials, store keys or runner settings.
    """
    return {k: v for k, v in env.items() if not k.startswith("MODELOPS_") and k not in _SECRET_ENV}


async def load_spec(store: BlobStore, settings: RunnerSettings) -> tuple[JobSpec, str]:
    """The job spec and its correlation id; ConfigError when it is missing or not this job's."""
    where = settings.job_spec
    try:
        data = await store.get_bytes(where)
    except (BlobNotFound, BucketNotFound, BlobAccessDenied, InvalidBlobUri) as exc:
        raise ConfigError(
            f"cannot read the job spec {where}: {exc}",
            hint="check MODELOPS_JOB_SPEC and MODELOPS_BLOB_STORE (the submitter writes it)",
        ) from exc
    except BlobStoreError as exc:
        raise InfrastructureError(f"cannot read the job spec {where}: {exc}") from exc
    try:
        spec = decode(data, JobSpec)
        extras = msgspec.json.decode(data, type=_SpecExtras)
    except (InvalidMessage, msgspec.DecodeError) as exc:
        raise ConfigError(f"job spec {where} is invalid: {exc}") from exc
    if spec.job_id != settings.job_id:
        raise ConfigError(
            f"job spec {where} is for job {spec.job_id}, not MODELOPS_JOB_ID={settings.job_id}",
            hint="the launcher mixed up two jobs' settings",
        )
    return spec, extras.correlation_id


async def _start_pool(
    settings: RunnerSettings, spec: JobSpec, bundle: PreparedBundle
) -> WorkerPool:
    """Start the workers with the job's models imported; a model that cannot import still
    gets a pool (without preloading), so each of its tasks reports the import error."""

    def make(preload: list[str]) -> WorkerPool:
        return WorkerPool(
            import_paths=bundle.import_paths,
            n_workers=settings.worker_count(spec.options.workers_per_runner),
            task_timeout_s=spec.options.task_timeout_s,
            recycle_after=spec.options.recycle_after,
            memory_limit_bytes=settings.memory_limit_bytes,
            env=worker_env(os.environ),
            preload=preload,
            cwd=bundle.tree,
            compression=OUTPUT_COMPRESSION,
        )

    pool = make(bundle.preload)
    try:
        await pool.start()
    except WorkerStartError as exc:
        if exc.kind != "import_error":
            raise InfrastructureError(f"worker processes cannot start: {exc}") from exc
        log.error(
            "runner.model_import_failed",
            error=exc.message,
            traceback=exc.traceback_tail,
            consequence="each task of this model fails with import_error",
        )
        pool = make([])
        try:
            await pool.start()
        except WorkerStartError as again:
            raise InfrastructureError(f"worker processes cannot start: {again}") from again
    return pool


async def _run_job(
    settings: RunnerSettings,
    store: BlobStore,
    nc: nats.NATS,
    stop: asyncio.Event,
    tables_ready: asyncio.Future[None],
) -> int:
    spec, correlation_id = await load_spec(store, settings)
    structlog.contextvars.bind_contextvars(correlation_id=correlation_id or settings.job_id)
    queue = await NatsTaskQueue.bind(nc, stream=TASKS_STREAM, consumer=spec.consumer)
    try:
        limits = await queue.limits()
    except ConsumerGone as exc:
        log.info("runner.nothing_to_do", reason=str(exc))
        await queue.close()
        return EXIT_OK
    bundle = await prepare_bundle(
        spec.bundle_ref,
        store_location=settings.bundle_store,
        cache_dir=settings.bundle_cache,
        entrypoints=spec.entrypoints,
    )
    if stop.is_set():
        await queue.close()
        return EXIT_OK
    pool = await _start_pool(settings, spec, bundle)
    try:
        await tables_ready  # before the first task, not during it: see serve()
        cfg = LoopConfig(
            job_id=settings.job_id,
            runner_id=settings.runner_id,
            bundle_ref=spec.bundle_ref,
            n_workers=pool.n_workers,
            ack_wait_s=limits.ack_wait_s,
            max_deliver=limits.max_deliver
            if limits.max_deliver > 0
            else spec.options.max_retries + 1,
            correlation_id=correlation_id,
            fetch_timeout_s=settings.fetch_timeout_s,
            shutdown_grace_s=settings.shutdown_grace_s,
            store_window_s=settings.store_window_s,
            enqueued_marker=spec.enqueued_marker,
            enqueue_wait_s=settings.enqueue_wait_s,
            output_compression=OUTPUT_COMPRESSION,
            max_held=_held_limit(limits.max_ack_pending, pool.n_workers),
        )
        publisher = JetStreamPublisher(nc)
        runner = Runner(cfg, queue=queue, pool=pool, store=store, publisher=publisher)
        watcher = asyncio.create_task(_stop_on(stop, runner))
        # Everything loaded so far lives as long as the process: out of the collector's sight,
        # a full collection scans only what tasks allocate instead of the whole heap (40-80 ms
        # every ~300 SIR tasks, during which no worker got its next task).
        gc.freeze()
        # Tasks allocate short-lived objects by the thousand (messages, frames, events): a
        # young collection every 700 of them cost ~0.07 ms per SIR task, every 20,000 ~0.02.
        # Cycles are rare here, so the garbage that waits longer is small.
        gc.set_threshold(_GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        log.info(
            "runner.started",
            workers=pool.n_workers,
            gc_frozen_objects=gc.get_freeze_count(),
            ack_wait_s=cfg.ack_wait_s,
            max_deliver=cfg.max_deliver,
            bundle=spec.bundle_ref,
        )
        try:
            outcome = await runner.run()
        finally:
            watcher.cancel()
            await publisher.close()
        log.info(
            "runner.finished",
            outcome=outcome,
            completed=runner.stats.completed,
            cached=runner.stats.cached,
            failed=runner.stats.failed,
            failures_by_kind=runner.stats.failures_by_kind,
            retried=runner.stats.retried,
            terminated=runner.stats.terminated,
            redelivered=runner.stats.redelivered,
        )
        return EXIT_OK
    finally:
        await pool.close()
        await queue.close()


def _warm_up_tables() -> None:
    importlib.import_module(f"{__package__}.tables").warm_up()


def _held_limit(max_ack_pending: int, n_workers: int) -> int:
    """Messages one runner holds at most: runner_held_limit, within the consumer's limit."""
    ours = runner_held_limit(n_workers)
    return ours if max_ack_pending <= 0 else max(1, min(max_ack_pending, ours))


async def _stop_on(stop: asyncio.Event, runner: Runner) -> None:
    await stop.wait()
    runner.stop()


async def serve(settings: RunnerSettings, stop: asyncio.Event | None = None) -> int:
    """Run the job's tasks until drained, cancelled or `stop`; return the exit status.

    RunnerErrors are logged with their hint and mapped to their exit status (2 for
    configuration, 1 for infrastructure); anything else propagates.
    """
    stop = stop or asyncio.Event()
    structlog.contextvars.bind_contextvars(job_id=settings.job_id, runner_id=settings.runner_id)
    try:
        store = open_blob_store(settings.blob_store, settings=settings.s3)
    except InvalidBlobUri as exc:
        return _fail(ConfigError(f"MODELOPS_BLOB_STORE is not usable: {exc}"))
    # pyarrow (~0.25 s of CPU; pandas too, ~0.25 s more, where __main__ did not hide it)
    # loads in a thread from the start, while this process waits on NATS, the spec, the
    # bundle and the workers. Loaded at the first store instead, it slowed the first ~50 SIR
    # tasks by a third on two cores and delayed their first TaskCompleted.
    tables_ready = asyncio.ensure_future(asyncio.to_thread(_warm_up_tables))
    try:
        async with store:
            try:
                nc = await connect(
                    settings.nats_url,
                    name=f"modelops-runner-{settings.runner_id}",
                    credentials=settings.nats_creds,
                )
            except NatsUnavailable as exc:
                raise InfrastructureError(str(exc)) from exc
            try:
                return await _run_job(settings, store, nc, stop, tables_ready)
            finally:
                with contextlib.suppress(nats.errors.Error, TimeoutError):
                    await nc.drain()  # flushes the last acks and events
    except RunnerError as exc:
        return _fail(exc)
    finally:
        if not tables_ready.done():
            tables_ready.cancel()  # a job that never ran a task: the thread just finishes
        elif not tables_ready.cancelled():
            tables_ready.exception()  # seen by _run_job if it mattered


def _fail(exc: RunnerError) -> int:
    if isinstance(exc, BundleRefused):
        event = "runner.bundle_refused"
    elif isinstance(exc, ConfigError):
        event = "runner.config_error"
    else:
        event = "runner.infrastructure_error"
    log.error(event, error=exc.message, hint=exc.hint, exit_status=exc.exit_status)
    return exc.exit_status
