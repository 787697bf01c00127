"""Results tables that keep up with running jobs: one ResultsBuilder per job, advanced in the
background every so often, handed to the completion when the job is done.

A failed advance drops its builder (the completion then writes everything from the start); a
cancelled job's builder is dropped with its temporary files.
"""

from __future__ import annotations

import asyncio
import contextvars

import structlog

from modelops_runtime.blobstore import BlobStore

from .results import BATCH_TASKS, ResultsBuilder
from .tracker import JobTracker

__all__ = ["LiveResults"]

log = structlog.get_logger(__name__)


class LiveResults:
    """The results builders of running jobs and the one advance in flight for each."""

    def __init__(self, blobs: BlobStore, *, interval_s: float) -> None:
        self.blobs = blobs
        self.interval_s = interval_s
        self._builders: dict[str, ResultsBuilder] = {}
        self._advancing: dict[str, asyncio.Task[int]] = {}
        self._advanced_at: dict[str, float] = {}

    @property
    def busy(self) -> bool:
        """Whether any job has a builder or an advance in flight."""
        return bool(self._builders or self._advancing)

    def advancing(self, job_id: str) -> asyncio.Task[int] | None:
        return self._advancing.get(job_id)

    def advance(self, tracker: JobTracker, now: float) -> None:
        """Start writing the job's next finished batches in the background: at most one advance
        at a time, every `interval_s`, and only once a whole batch can be finished."""
        job_id = tracker.job_id
        if tracker.done or job_id in self._advancing:
            return
        if now - self._advanced_at.get(job_id, float("-inf")) < self.interval_s:
            return
        builder = self._builders.get(job_id)
        written = builder.batches_written * BATCH_TASKS if builder else 0
        if tracker.total - tracker.pending - written < BATCH_TASKS:
            return  # not even one more batch could be complete yet
        if builder is None:
            builder = self._builders[job_id] = ResultsBuilder(self.blobs, job_id)
        self._advanced_at[job_id] = now
        task = asyncio.create_task(
            builder.advance(tracker), name=f"results-{job_id}", context=contextvars.Context()
        )
        self._advancing[job_id] = task
        task.add_done_callback(lambda done: self._advanced(job_id, builder, done))

    def _advanced(self, job_id: str, builder: ResultsBuilder, task: asyncio.Task[int]) -> None:
        if self._advancing.get(job_id) is task:
            del self._advancing[job_id]
        if task.cancelled():
            return
        if (exc := task.exception()) is not None:
            log.warning("results.advance_failed", job_id=job_id, error=str(exc))
            self._drop(job_id, builder)

    async def take(self, job_id: str) -> ResultsBuilder | None:
        """For the completion: wait for the advance in flight, then hand over the job's builder
        (None if it has none, or its last advance failed). The caller finishes or discards it."""
        task = self._advancing.pop(job_id, None)
        if task is not None:
            await asyncio.wait({task})  # its error, if any, is _advanced's to log and act on
        self._advanced_at.pop(job_id, None)
        return self._builders.pop(job_id, None)

    async def drop(self, job_id: str) -> None:
        """Stop and forget the job's builder (a cancelled or forgotten job)."""
        task = self._advancing.pop(job_id, None)
        if task is not None:
            task.cancel()
            await asyncio.wait({task})  # until it has stopped; _advanced sees the outcome
        self._drop(job_id)

    async def close(self) -> None:
        for job_id in list({*self._advancing, *self._builders}):
            await self.drop(job_id)

    def _drop(self, job_id: str, builder: ResultsBuilder | None = None) -> None:
        if builder is None or self._builders.get(job_id) is builder:
            builder = self._builders.pop(job_id, None)
        self._advanced_at.pop(job_id, None)
        if builder is not None:
            builder.discard()
