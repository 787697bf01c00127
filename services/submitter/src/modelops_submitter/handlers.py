"""Command handlers: SubmitJob and CancelJob, over ports passed in (no I/O of their own).

A submit is idempotent step by step, so a redelivered or resent command resumes or repeats
it safely: the job id comes from the idempotency key, the job record is claimed with a
create-if-absent, uploads overwrite identical content, the consumer is created only if absent,
task publishes carry `Nats-Msg-Id` `<job_id>:<task_id>`, and launchers leave a job whose
runners exist alone. A record past `submitted` means the submit finished: the command is
answered with the same JobSubmitted again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import msgspec
import structlog

from modelops_bundle.errors import BundleError, BundleNotFound, StoreError
from modelops_bundle.oci import BundleIndex
from modelops_contracts import (
    CancelJob,
    JobCancelled,
    JobRecord,
    JobSpec,
    JobSubmitted,
    LaunchOptions,
    SimJob,
    SubmitJob,
    blob_keys,
    decode,
    encode,
)
from modelops_contracts.jobs import runner_held_limit
from modelops_contracts.subjects import task_subject
from modelops_runtime.blobstore import BlobStore

from .adapters.task_queue import consumer_name
from .binding import (
    bind_job,
    check_against_index,
    entrypoints_of,
    idempotency_key,
    job_id_for,
    parse_target,
)
from .cache import find_done
from .errors import CommandInvalid, LaunchError
from .job_files import mark_enqueued, upload_job_files
from .launchers.base import Launcher, LaunchRequest, runner_env
from .memory import LARGE_JOB, release_memory
from .ports import BundleIndexes, Clock, EventBus, JobRecords, RecordChange, TaskQueue
from .settings import Settings
from .tracking import Tracking, iso_time

__all__ = [
    "SubmitterDeps",
    "max_ack_pending",
    "on_cancel_job",
    "on_submit_job",
    "resume_runners",
]

log = structlog.get_logger(__name__)


@dataclass
class SubmitterDeps:
    """Everything the handlers touch; bootstrap.py builds the real ones, tests fakes."""

    settings: Settings
    jobs: JobRecords
    queue: TaskQueue
    events: EventBus
    blobs: BlobStore
    bundles: BundleIndexes
    launchers: Mapping[str, Launcher]
    tracking: Tracking
    clock: Clock = field(default=time.time)


def max_ack_pending(options: LaunchOptions) -> int:
    """Tasks the job's runners may hold unacknowledged at once: what each runner holds at
    most (runner_held_limit: tasks running, a short look-ahead, finished tasks being stored
    together), so no runner's fetching stalls on another's holdings. A crashed runner's
    tasks come back after ack_wait."""
    workers = options.workers_per_runner or 8
    return max(64, min(100_000, options.runners * runner_held_limit(workers)))


def _launcher(deps: SubmitterDeps, options: LaunchOptions) -> Launcher:
    name = deps.settings.launcher if options.launcher == "default" else options.launcher
    launcher = deps.launchers.get(name)
    if launcher is None:
        raise CommandInvalid(
            f"launcher {name!r} is not configured on this submitter",
            field="options.launcher",
            hint=f"use one of: {', '.join(sorted(deps.launchers)) or 'none'}",
        )
    return launcher


async def _pinned_ref(deps: SubmitterDeps, text: str) -> str:
    """The digest-pinned reference: a tag is resolved once, here, and never again."""
    target = parse_target(text)
    if target.digest is not None:
        return target.pinned(target.digest)
    assert target.tag is not None
    try:
        digest = await deps.bundles.resolve(target.repository, target.tag)
    except BundleNotFound as exc:
        raise CommandInvalid(
            f"bundle {text!r} not found: no tag {target.tag!r} in repository {target.repository!r}",
            field="bundle_ref",
            hint="push it with 'modelops build --push'",
        ) from exc
    return target.pinned(digest)


async def _bundle_index(deps: SubmitterDeps, bundle_ref: str) -> BundleIndex:
    target = parse_target(bundle_ref)
    assert target.digest is not None
    try:
        return await deps.bundles.index(target.repository, target.digest)
    except BundleNotFound as exc:
        raise CommandInvalid(
            f"bundle {bundle_ref} not found in the bundle store: {exc.message}",
            field="bundle_ref",
            hint="push it with 'modelops build --push', or check the digest",
        ) from exc
    except StoreError:
        raise  # the store is down or refuses us: transient or a deployment problem
    except BundleError as exc:  # corrupt, not a bundle, unsafe paths
        raise CommandInvalid(
            f"bundle {bundle_ref} cannot be used: {exc.message}",
            field="bundle_ref",
            hint=exc.hint,
        ) from exc


def _submitted(record: JobRecord, correlation_id: str) -> JobSubmitted:
    return JobSubmitted(
        correlation_id=correlation_id,
        job_id=record.job_id,
        bundle_ref=record.bundle_ref,
        n_tasks=record.n_tasks,
        n_cached=record.n_cached,
        spec_uri=record.spec_uri,
        launcher=record.launcher,
        study=record.study,
    )


async def _claim(
    deps: SubmitterDeps, cmd: SubmitJob, job: SimJob, launcher: str
) -> tuple[JobRecord, bool]:
    """Create the job record (state `submitted`); (record, True) if this call created it."""
    now = iso_time(deps.clock())
    record = JobRecord(
        job_id=job.job_id,
        state="submitted",
        bundle_ref=job.bundle_ref,
        n_tasks=job.n_tasks,
        created=now,
        updated=now,
        study=job.metadata.get("study", ""),
        launcher=launcher,
        correlation_id=cmd.correlation_id,
        idempotency_key=idempotency_key(cmd),
        events_start_seq=await deps.events.next_sequence(),
    )
    if await deps.jobs.create(record):
        return record, True
    existing = await deps.jobs.get(job.job_id)
    if existing is None:  # created and deleted in between: vanishingly rare, try once more
        return await _claim(deps, cmd, job, launcher)
    if existing.idempotency_key != record.idempotency_key:  # another command won the race
        raise CommandInvalid(f"job {job.job_id} already exists", field="job_id", job_id=job.job_id)
    return existing, False


async def on_submit_job(cmd: SubmitJob, *, deps: SubmitterDeps) -> JobSubmitted:
    """Bind, check, upload, record, enqueue, launch; publish and return JobSubmitted."""
    key = idempotency_key(cmd)
    job_id = job_id_for(cmd)
    existing = await deps.jobs.get(job_id)
    if existing is not None and existing.idempotency_key != key:
        raise CommandInvalid(
            f"job {job_id} already exists",
            field="job_id" if cmd.job_id or cmd.job else "idempotency_key",
            hint="choose another job_id; resend with the same idempotency_key to get the same job",
            job_id=job_id,
        )
    if existing is not None and existing.state != "submitted":
        event = _submitted(existing, cmd.correlation_id)
        await deps.events.publish(event)
        log.info("job.submit_repeated", job_id=job_id, state=existing.state)
        return event

    launcher = _launcher(deps, cmd.options)
    bundle_ref = existing.bundle_ref if existing else await _pinned_ref(deps, cmd.bundle_ref)
    check_against_index(cmd, await _bundle_index(deps, bundle_ref))
    started = time.perf_counter()
    done = await _enqueue_job(
        cmd, deps=deps, job_id=job_id, bundle_ref=bundle_ref, existing=existing, launcher=launcher
    )
    # Every SimTask of the job is garbage now: give the memory back before the long tracking.
    if done.n_tasks >= LARGE_JOB:
        release_memory()

    def running(r: JobRecord) -> JobRecord | None:
        if r.state != "submitted":
            return None
        return msgspec.structs.replace(
            r,
            state="running",
            spec_uri=done.spec_uri,
            n_cached=done.n_cached,
            launcher=launcher.name,
            updated=iso_time(deps.clock()),
        )

    record = await deps.jobs.update(job_id, running) or done.record
    event = _submitted(record, cmd.correlation_id)
    await deps.events.publish(event)
    deps.tracking.release(job_id)
    log.info(
        "job.submitted",
        job_id=job_id,
        bundle_ref=bundle_ref,
        tasks=done.n_tasks,
        cached=done.n_cached,
        enqueued=done.enqueued,
        enqueue_rate=round(done.enqueued / done.enqueue_s) if done.enqueue_s else None,
        launcher=launcher.name,
        runners=done.runners,
        seconds=round(time.perf_counter() - started, 3),
    )
    return event


@dataclass(frozen=True)
class _Enqueued:
    """What is left of a submit once its tasks are queued: no SimTask survives it."""

    record: JobRecord
    spec_uri: str
    n_tasks: int
    n_cached: int
    enqueued: int
    enqueue_s: float
    runners: int


async def _enqueue_job(
    cmd: SubmitJob,
    *,
    deps: SubmitterDeps,
    job_id: str,
    bundle_ref: str,
    existing: JobRecord | None,
    launcher: Launcher,
) -> _Enqueued:
    """Bind and claim the job, then run it; a permanent failure marks the record failed."""
    job = await asyncio.to_thread(bind_job, cmd, bundle_ref=bundle_ref, job_id=job_id)
    record, _ = (existing, False) if existing else await _claim(deps, cmd, job, launcher.name)
    try:
        return await _run(cmd, deps=deps, job=job, record=record, launcher=launcher)
    except (CommandInvalid, LaunchError) as exc:
        if isinstance(exc, LaunchError) and exc.transient:
            raise
        await deps.tracking.forget(job_id)
        await deps.jobs.update(job_id, _failed(str(exc), iso_time(deps.clock())))
        with contextlib.suppress(LaunchError):  # runners launched before the failure: stop them
            await launcher.stop(job_id)
        raise


def _failed(reason: str, now: str) -> RecordChange:
    def change(record: JobRecord) -> JobRecord | None:
        if record.terminal:
            return None
        return msgspec.structs.replace(record, state="failed", reason=reason, updated=now)

    return change


async def _run(
    cmd: SubmitJob, *, deps: SubmitterDeps, job: SimJob, record: JobRecord, launcher: Launcher
) -> _Enqueued:
    """Cache lookup, uploads, tracker, consumer, enqueue, launch (each step idempotent)."""
    settings, job_id = deps.settings, job.job_id
    cached = await find_done(deps.blobs, (t.task_id for t in job.tasks()))
    spec = JobSpec(
        job_id=job_id,
        bundle_ref=job.bundle_ref,
        entrypoints=entrypoints_of(job),
        n_tasks=job.n_tasks,
        task_subject=task_subject(job_id),
        consumer=consumer_name(job_id),
        options=cmd.options,
        job_uri=deps.blobs.uri_for(blob_keys.job_tasks(job_id)),
        enqueued_marker=deps.blobs.uri_for(blob_keys.job_enqueued(job_id)),
    )
    spec_uri = await upload_job_files(deps.blobs, job, spec, cached)
    to_run = [t for t in job.tasks() if t.task_id not in cached]
    tracker = deps.tracking.new_tracker(
        record, expected=[t.task_id for t in to_run], cached=dict(cached)
    )
    await deps.tracking.start(record, tracker, hold=True)  # before any task can report
    enqueued, enqueue_s, runners = 0, 0.0, min(cmd.options.runners, len(to_run))
    if to_run:
        await deps.queue.create_consumer(
            job_id,
            ack_wait_s=settings.task_ack_wait_s,
            max_deliver=cmd.options.max_retries + 1,
            max_ack_pending=max_ack_pending(cmd.options),
        )
        request = LaunchRequest(
            job_id=job_id,
            runners=runners,
            options=cmd.options,
            env=runner_env(settings, job_id=job_id, options=cmd.options, kind=launcher.name),  # type: ignore[arg-type]
        )
        # Launch first: a runner's start-up (interpreter, bundle, worker pool: ~1 s) overlaps
        # the enqueue, and it takes tasks as they arrive. It leaves an empty queue only once
        # the marker below exists, so a slow enqueue never strands tasks.
        await launcher.launch(request)
        t0 = time.perf_counter()
        enqueued = await deps.queue.enqueue(
            job_id, ((f"{job_id}:{t.task_id}", encode(t)) for t in to_run)
        )
        enqueue_s = time.perf_counter() - t0
        await mark_enqueued(deps.blobs, job_id, enqueued)
        if not await launcher.has_runners(job_id) and await deps.queue.queued(job_id):
            # every runner gave up waiting for the marker (an enqueue stalled for minutes)
            log.warning("job.runners_relaunched", job_id=job_id, reason="none left after enqueue")
            await launcher.launch(request)
    return _Enqueued(
        record=record,
        spec_uri=spec_uri,
        n_tasks=job.n_tasks,
        n_cached=len(cached),
        enqueued=enqueued,
        enqueue_s=enqueue_s,
        runners=runners,
    )


async def on_cancel_job(cmd: CancelJob, *, deps: SubmitterDeps) -> JobCancelled:
    """Stop runners, drop the queue and its consumer, mark the job cancelled."""
    job_id = cmd.job_id
    record = await deps.jobs.get(job_id)
    if record is None:
        raise CommandInvalid(
            f"no job {job_id}", field="job_id", hint="list jobs with 'modelops jobs'", job_id=job_id
        )
    if record.state in ("completed", "failed"):
        raise CommandInvalid(
            f"job {job_id} is already {record.state}", field="job_id", job_id=job_id
        )
    tracker = await deps.tracking.forget(job_id)  # from here on its late results are ignored
    launcher = deps.launchers.get(record.launcher)
    if launcher is not None:
        await launcher.stop(job_id)
    else:
        log.warning("job.cancel_unknown_launcher", job_id=job_id, launcher=record.launcher)
    await deps.queue.delete_consumer(job_id)
    purged = await deps.queue.purge(job_id)

    def cancelled(r: JobRecord) -> JobRecord | None:
        if r.state in ("completed", "failed"):
            return None
        counts = (
            {"completed": tracker.completed, "failed": tracker.failed, "n_cached": tracker.cached}
            if tracker is not None
            else {}
        )
        return msgspec.structs.replace(
            r, state="cancelled", reason=cmd.reason, updated=iso_time(deps.clock()), **counts
        )

    await deps.jobs.update(job_id, cancelled)
    event = JobCancelled(
        correlation_id=cmd.correlation_id, job_id=job_id, reason=cmd.reason, purged_tasks=purged
    )
    await deps.events.publish(event)
    log.info("job.cancelled", job_id=job_id, purged=purged, reason=cmd.reason)
    return event


async def resume_runners(deps: SubmitterDeps) -> list[str]:
    """At start-up: launch runners again for running jobs that have tasks but no runners
    (a clean shutdown stopped local ones; a Job may have been deleted by hand). Returns the
    job ids it launched for."""
    resumed = []
    for record in await deps.jobs.list():
        if record.state != "running":
            continue
        launcher = deps.launchers.get(record.launcher)
        if launcher is None or await launcher.has_runners(record.job_id):
            continue
        queued = await deps.queue.queued(record.job_id)
        if not queued:
            continue
        spec = decode(await deps.blobs.get_bytes(blob_keys.job_spec(record.job_id)), JobSpec)
        runners = min(spec.options.runners, queued)
        await launcher.launch(
            LaunchRequest(
                job_id=record.job_id,
                runners=runners,
                options=spec.options,
                env=runner_env(
                    deps.settings,
                    job_id=record.job_id,
                    options=spec.options,
                    kind=launcher.name,  # type: ignore[arg-type]
                ),
            )
        )
        log.info("job.runners_resumed", job_id=record.job_id, runners=runners, queued=queued)
        resumed.append(record.job_id)
    return resumed
