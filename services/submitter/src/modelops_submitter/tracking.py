"""Tracking jobs: the trackers of running jobs, their progress, completion and recovery.

The decisions are the pure fold in tracker.py; this module does the I/O around it through the
ports: it registers a tracker when a job is submitted (replaying any events the job already
has), folds events from the tracker consumer, publishes JobProgress at a bounded rate, and when
a job's last task ends writes the results tables, publishes JobCompleted and updates the job
record. After a restart, `recover()` rebuilds every running job from its task index and its
events since `events_start_seq`, so tracking carries on with exact counts.

Completion runs as a background task per job, so a large results table never stalls the
counting of other jobs' events.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as dt
from collections import OrderedDict

import msgspec
import nats.errors
import structlog

from modelops_contracts import JobRecord, TaskCompleted, TaskFailed
from modelops_runtime.blobstore import BlobStore, BlobStoreError

from .errors import ResultsError
from .job_files import read_tracking_state
from .live_results import LiveResults
from .memory import LARGE_JOB, release_memory
from .ports import Clock, EventBus, JobRecords, RecordChange, TaskQueue
from .results import write_results
from .tracker import JobTracker

__all__ = ["Tracking", "epoch_of", "iso_time"]

log = structlog.get_logger(__name__)

RETRYABLE = (BlobStoreError, nats.errors.Error, OSError, TimeoutError)
_FINISHED_MEMORY = 100_000  # job ids known to be over: their late events are dropped at once


def epoch_of(timestamp: str) -> float:
    """Seconds since the epoch of an RFC 3339 timestamp (as in JobRecord.created)."""
    return dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def iso_time(epoch: float) -> str:
    """RFC 3339 UTC with microseconds, the format of the contracts' timestamps."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat().replace("+00:00", "Z")


class Tracking:
    """Trackers of the jobs this submitter follows, and everything they trigger."""

    def __init__(
        self,
        *,
        jobs: JobRecords,
        events: EventBus,
        blobs: BlobStore,
        queue: TaskQueue,
        clock: Clock,
        progress_interval_s: float = 0.5,
        finalize_attempts: int = 5,
        retry_delay_s: float = 1.0,
    ) -> None:
        self.jobs = jobs
        self.events = events
        self.blobs = blobs
        self.queue = queue
        self.clock = clock
        self.progress_interval_s = progress_interval_s
        self.finalize_attempts = finalize_attempts
        self.retry_delay_s = retry_delay_s
        self.trackers: dict[str, JobTracker] = {}
        self._held: set[str] = set()
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}
        self._finalizing: dict[str, asyncio.Task[None]] = {}
        self.live_results = LiveResults(blobs, interval_s=progress_interval_s)

    # ---------------------------------------------------------------- registering

    def new_tracker(
        self, record: JobRecord, *, expected: list[str], cached: dict[str, tuple[str, ...]]
    ) -> JobTracker:
        return JobTracker(
            record.job_id,
            expected=expected,
            cached=cached,
            correlation_id=record.correlation_id,
            started=epoch_of(record.created),
            progress_interval_s=self.progress_interval_s,
        )

    def _lock(self, job_id: str) -> asyncio.Lock:
        return self._locks.setdefault(job_id, asyncio.Lock())

    async def start(self, record: JobRecord, tracker: JobTracker, *, hold: bool = False) -> None:
        """Follow a job from now on, after folding the events it already has.

        With `hold`, completion waits for `release` (the submit publishes JobSubmitted first).
        """
        job_id = record.job_id
        async with self._lock(job_id):
            self._finished.pop(job_id, None)
            if hold:
                self._held.add(job_id)
            self.trackers[job_id] = tracker
            async for event in self.events.replay(job_id, record.events_start_seq):
                tracker.apply(event)
        self._check_done(tracker)

    def release(self, job_id: str) -> None:
        """Let a held job complete (immediately, if every task has already ended)."""
        self._held.discard(job_id)
        tracker = self.trackers.get(job_id)
        if tracker is not None:
            self._check_done(tracker)

    async def _load(self, job_id: str) -> JobTracker | None:
        """The tracker of a running job this process does not follow yet (after a restart)."""
        async with self._lock(job_id):
            if job_id in self.trackers:
                return self.trackers[job_id]
            record = await self.jobs.get(job_id)
            if record is None or record.terminal:
                self._remember_finished(job_id)
                return None
            if record.state == "submitted":
                return None  # its submit is still under way; it starts the tracker itself
            state = await read_tracking_state(self.blobs, job_id)
            tracker = self.new_tracker(record, expected=state.expected, cached=state.cached)
            self.trackers[job_id] = tracker
            async for event in self.events.replay(job_id, record.events_start_seq):
                tracker.apply(event)
        log.info(
            "tracker.loaded",
            job_id=job_id,
            total=tracker.total,
            pending=tracker.pending,
            completed=tracker.completed,
            failed=tracker.failed,
            cached=tracker.cached,
        )
        self._check_done(tracker)
        return tracker

    async def recover(self) -> int:
        """Rebuild every running job (at start-up); how many were loaded."""
        loaded = 0
        for record in await self.jobs.list():
            if record.state == "running" and record.job_id not in self.trackers:
                if await self._load(record.job_id) is not None:
                    loaded += 1
        log.info("tracker.recovered", jobs=loaded)
        return loaded

    async def forget(self, job_id: str) -> JobTracker | None:
        """Stop following a job (it was cancelled): its late events are ignored."""
        task = self._finalizing.pop(job_id, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._held.discard(job_id)
        self._remember_finished(job_id)
        self._locks.pop(job_id, None)
        await self.live_results.drop(job_id)
        return self.trackers.pop(job_id, None)

    def _remember_finished(self, job_id: str) -> None:
        self._finished[job_id] = None
        self._finished.move_to_end(job_id)
        while len(self._finished) > _FINISHED_MEMORY:
            self._finished.popitem(last=False)

    # ---------------------------------------------------------------- folding

    async def on_event(self, event: TaskCompleted | TaskFailed) -> bool:
        """Fold one task event; True if it counted."""
        tracker = self.trackers.get(event.job_id)
        if tracker is None:
            if event.job_id in self._finished:
                return False
            tracker = await self._load(event.job_id)
            if tracker is None:
                log.debug("tracker.event_ignored", job_id=event.job_id, task_id=event.task_id)
                return False
        changed = tracker.apply(event)
        if changed:
            self._check_done(tracker)
        return changed

    async def tick(self) -> None:
        """Publish the JobProgress that are due (and record the counts in the job record), and
        let the results tables of running jobs catch up in the background."""
        now = self.clock()
        for tracker in list(self.trackers.values()):
            if tracker.job_id not in self._finalizing:
                self.live_results.advance(tracker, now)
            progress = tracker.progress_due(now)
            if progress is None:
                continue
            await self.events.publish(progress)
            await self.jobs.update(tracker.job_id, self._with_counts(tracker, state="running"))

    # ---------------------------------------------------------------- completing

    def _check_done(self, tracker: JobTracker) -> None:
        job_id = tracker.job_id
        if not tracker.done or job_id in self._held or job_id in self._finalizing:
            return
        if self.trackers.get(job_id) is not tracker:
            return
        # A fresh context: the completion must not log under the event that triggered it.
        task = asyncio.create_task(
            self._finalize(tracker), name=f"finalize-{job_id}", context=contextvars.Context()
        )
        self._finalizing[job_id] = task
        task.add_done_callback(lambda _: self._finalizing.pop(job_id, None))

    async def _finalize(self, tracker: JobTracker) -> None:
        job_id = tracker.job_id
        structlog.contextvars.bind_contextvars(job_id=job_id, correlation_id=tracker.correlation_id)
        delay = self.retry_delay_s
        try:
            for attempt in range(1, self.finalize_attempts + 1):
                try:
                    await self._complete(tracker)
                    return
                except ResultsError as exc:
                    await self._fail(tracker, str(exc))
                    return
                except RETRYABLE as exc:
                    log.warning(
                        "job.complete_retry", job_id=job_id, attempt=attempt, error=str(exc)
                    )
                    if attempt == self.finalize_attempts:
                        await self._fail(tracker, f"could not write results: {exc}")
                        return
                    await asyncio.sleep(delay)  # back-off before the next attempt
                    delay *= 2
        finally:
            if self.trackers.get(job_id) is tracker:
                del self.trackers[job_id]
            self._remember_finished(job_id)
            self._locks.pop(job_id, None)
            if tracker.total >= LARGE_JOB:
                release_memory()  # the results tables' buffers, before the next job

    async def _complete(self, tracker: JobTracker) -> None:
        job_id = tracker.job_id
        record = await self.jobs.get(job_id)
        if record is not None and record.terminal:
            log.info("job.already_over", job_id=job_id, state=record.state)
            return
        builder = await self.live_results.take(job_id)
        if builder is None:
            results_uri = await write_results(self.blobs, job_id, tracker)
        else:
            try:
                results_uri = await builder.finish(tracker)
            finally:
                builder.discard()  # a retry starts from scratch
        completed = tracker.completion(self.clock(), results_uri=results_uri)
        await self.events.publish(completed)
        await self.jobs.update(
            job_id, self._with_counts(tracker, state="completed", results_uri=results_uri)
        )
        await self.queue.delete_consumer(job_id)
        log.info(
            "job.completed",
            job_id=job_id,
            total=completed.total,
            completed=completed.completed,
            failed=completed.failed,
            cached=completed.cached,
            duration_s=completed.duration_s,
            results_uri=results_uri,
        )

    async def _fail(self, tracker: JobTracker, reason: str) -> None:
        log.error("job.failed", job_id=tracker.job_id, reason=reason)
        await self.jobs.update(
            tracker.job_id, self._with_counts(tracker, state="failed", reason=reason)
        )

    def _with_counts(self, tracker: JobTracker, *, state: str, **extra: str) -> RecordChange:
        """A record change that writes the tracker's counts (and never leaves a terminal state)."""

        def change(record: JobRecord) -> JobRecord | None:
            if record.terminal:
                return None
            return msgspec.structs.replace(
                record,
                state=state,
                completed=tracker.completed,
                failed=tracker.failed,
                n_cached=tracker.cached,
                updated=iso_time(self.clock()),
                **extra,
            )

        return change

    async def close(self) -> None:
        """Stop completions in flight (a restart redoes them from the job records)."""
        for task in list(self._finalizing.values()):
            task.cancel()
        for task in list(self._finalizing.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.live_results.close()
