"""What the handlers need from the outside world, as protocols.

bootstrap.py plugs in the NATS/JetStream, blob store and bundle store adapters (adapters/);
unit tests plug in in-memory fakes. Launchers have their own protocol in launchers/base.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from typing import Protocol

from modelops_bundle.oci import BundleIndex
from modelops_contracts import Event, JobRecord, TaskCompleted, TaskFailed

__all__ = ["BundleIndexes", "Clock", "EventBus", "JobRecords", "RecordChange", "TaskQueue"]

Clock = Callable[[], float]
"""Wall-clock seconds (time.time): job durations survive a restart of the submitter."""

RecordChange = Callable[[JobRecord], JobRecord | None]
"""Given the latest record, the new one (None: leave it as it is)."""


class JobRecords(Protocol):
    """Job records in KV `modelops-jobs`, keyed by job id, changed by compare-and-set."""

    async def get(self, job_id: str) -> JobRecord | None: ...

    async def create(self, record: JobRecord) -> bool:
        """Store a new record; False if one already exists under its job id."""
        ...

    async def update(self, job_id: str, change: RecordChange) -> JobRecord | None:
        """Apply `change` to the latest record until the write wins; the record after it."""
        ...

    async def list(self) -> list[JobRecord]: ...


class TaskQueue(Protocol):
    """The job's work queue: subject `modelops.tasks.<job_id>` and its consumer."""

    async def create_consumer(
        self, job_id: str, *, ack_wait_s: float, max_deliver: int, max_ack_pending: int
    ) -> str:
        """Create (or keep, if identical) the runners' durable consumer; its name."""
        ...

    async def enqueue(self, job_id: str, messages: Iterable[tuple[str, bytes]]) -> int:
        """Publish (msg id, payload) pairs pipelined, waiting for every PubAck; the count."""
        ...

    async def delete_consumer(self, job_id: str) -> None: ...

    async def purge(self, job_id: str) -> int:
        """Drop every task still queued for the job; how many were dropped."""
        ...

    async def queued(self, job_id: str) -> int:
        """Tasks of the job still in the stream (queued or awaiting an ack)."""
        ...


class EventBus(Protocol):
    """The events stream: publishing, and replaying one job's task events."""

    async def publish(self, event: Event) -> None:
        """Publish through JetStream with Nats-Msg-Id = event.id, awaiting the PubAck."""
        ...

    async def next_sequence(self) -> int:
        """The stream sequence the next event will get: where a new job's history starts."""
        ...

    def replay(self, job_id: str, start_seq: int) -> AsyncIterator[TaskCompleted | TaskFailed]:
        """The job's task events from `start_seq` up to the end of the stream as of now."""
        ...


class BundleIndexes(Protocol):
    """Reads bundle indexes from the deployment's bundle store."""

    async def resolve(self, repository: str, tag: str) -> str:
        """The manifest digest a tag points at (BundleNotFound if none)."""
        ...

    async def index(self, repository: str, digest: str) -> BundleIndex:
        """The verified bundle index (BundleNotFound, IntegrityError, InvalidBundle)."""
        ...
