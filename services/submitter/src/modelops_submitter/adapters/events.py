"""The events stream (port: EventBus): publishing, and replaying one job's task events.

Replay reads through a short-lived ephemeral pull consumer starting at the job's first
sequence and filtered to its `task_completed`/`task_failed` subjects, in batches, until the
consumer has nothing pending. Events published meanwhile also reach the tracker's durable
consumer, and the tracker counts each task once, so the overlap is harmless.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import nats.errors
import nats.js.errors
import structlog
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from modelops_contracts import (
    Event,
    InvalidMessage,
    TaskCompleted,
    TaskFailed,
    decode_event,
    encode,
)
from modelops_contracts.subjects import EVENTS_STREAM, job_event_subject

__all__ = ["JetStreamEventBus", "task_event_subjects"]

log = structlog.get_logger(__name__)

_REPLAY_BATCH = 1000


def task_event_subjects(job_id: str = "*") -> list[str]:
    """Subjects of task results: one job's, or every job's with the default."""
    return [
        job_event_subject(job_id, TaskCompleted.kind),
        job_event_subject(job_id, TaskFailed.kind),
    ]


class JetStreamEventBus:
    """EventBus over JetStream."""

    def __init__(self, js: JetStreamContext, *, publish_timeout_s: float = 10.0) -> None:
        self.js = js
        self.publish_timeout_s = publish_timeout_s

    async def publish(self, event: Event) -> None:
        await self.js.publish(
            event.subject,
            encode(event),
            timeout=self.publish_timeout_s,
            headers={"Nats-Msg-Id": event.id},
        )

    async def next_sequence(self) -> int:
        info = await self.js.stream_info(EVENTS_STREAM)
        return int(info.state.last_seq) + 1

    async def replay(
        self, job_id: str, start_seq: int
    ) -> AsyncIterator[TaskCompleted | TaskFailed]:
        name = f"replay-{job_id}-{uuid.uuid4().hex[:8]}"
        config = ConsumerConfig(
            name=name,
            description=f"submitter replay of job {job_id}",
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=max(1, start_seq),
            ack_policy=AckPolicy.NONE,
            filter_subjects=task_event_subjects(job_id),
            inactive_threshold=60.0,  # the server removes it if we die mid-replay
            mem_storage=True,
        )
        info = await self.js.add_consumer(EVENTS_STREAM, config)
        pending = info.num_pending or 0
        sub = await self.js.pull_subscribe_bind(consumer=name, stream=EVENTS_STREAM)
        seen = 0
        try:
            while pending > 0:
                try:
                    msgs = await sub.fetch(min(_REPLAY_BATCH, pending), timeout=5.0)
                except (nats.errors.TimeoutError, TimeoutError):  # nats-py raises either
                    pending = (await sub.consumer_info()).num_pending or 0
                    continue
                for msg in msgs:
                    seen += 1
                    pending = msg.metadata.num_pending
                    try:
                        event = decode_event(msg.data)
                    except InvalidMessage as exc:
                        log.warning("tracker.replay_undecodable", job_id=job_id, error=str(exc))
                        continue
                    if isinstance(event, TaskCompleted | TaskFailed):
                        yield event
        finally:
            try:
                await sub.unsubscribe()
                await self.js.delete_consumer(EVENTS_STREAM, name)
            except (nats.errors.Error, nats.js.errors.Error) as exc:
                log.debug("tracker.replay_cleanup_failed", job_id=job_id, error=str(exc))
        log.info("tracker.replayed", job_id=job_id, from_seq=start_seq, events=seen)
