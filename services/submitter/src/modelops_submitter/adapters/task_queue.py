"""The work queue of a job on the TASKS stream (port: TaskQueue).

Enqueueing is pipelined: `publish_async` sends without waiting, and the JetStream context
bounds how many PubAcks may be outstanding (`publish_async_max_pending`), so memory stays
bounded and no task waits a round trip for the one before it. A round trip per task would cap
a submit at a few thousand tasks per second (FACTS.md).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable

import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from modelops_contracts.subjects import TASKS_STREAM, task_subject

from ..errors import SubmitterError

__all__ = ["EnqueueFailed", "JetStreamTaskQueue", "consumer_name"]

log = structlog.get_logger(__name__)


def consumer_name(job_id: str) -> str:
    """`runners-<job_id>`: the durable consumer every runner of the job pulls from."""
    return f"runners-{job_id}"


class EnqueueFailed(SubmitterError):
    """JetStream refused some task publishes; the first refusal is the cause."""


class JetStreamTaskQueue:
    """TaskQueue over a JetStream context created with a bounded publish_async window."""

    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        *,
        stall_timeout_s: float = 30.0,
        ack_timeout_s: float = 60.0,
        api_timeout_s: float = 5.0,
    ) -> None:
        self.nc = nc
        self.js = js
        self.stall_timeout_s = stall_timeout_s
        self.ack_timeout_s = ack_timeout_s
        self.api_timeout_s = api_timeout_s

    async def create_consumer(
        self, job_id: str, *, ack_wait_s: float, max_deliver: int, max_ack_pending: int
    ) -> str:
        name = consumer_name(job_id)
        config = ConsumerConfig(
            durable_name=name,
            name=name,
            description=f"runners of job {job_id}",
            filter_subject=task_subject(job_id),
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait_s,
            max_deliver=max_deliver,
            max_ack_pending=max_ack_pending,
        )
        await self.js.add_consumer(TASKS_STREAM, config)
        return name

    async def enqueue(self, job_id: str, messages: Iterable[tuple[str, bytes]]) -> int:
        subject = task_subject(job_id)
        failures: list[BaseException] = []

        def check(fut: asyncio.Future[object]) -> None:
            if not fut.cancelled() and fut.exception() is not None:
                failures.append(fut.exception())  # type: ignore[arg-type]

        count = 0
        loop = asyncio.get_running_loop()
        # One deadline pushed forward as PubAcks free the window: it fires only when the
        # server stops acknowledging. (publish_async's own `wait_stall` wraps every call in
        # asyncio.wait_for, which yields to the loop per message and so flushes the socket
        # per message: measured 5k/s against 48k/s without it.)
        try:
            async with asyncio.timeout(self.stall_timeout_s) as guard:
                for msg_id, payload in messages:
                    fut = await self.js.publish_async(
                        subject, payload, headers={"Nats-Msg-Id": msg_id}
                    )
                    fut.add_done_callback(check)
                    count += 1
                    if count % 1024 == 0:
                        if failures:
                            break
                        guard.reschedule(loop.time() + self.stall_timeout_s)
                guard.reschedule(loop.time() + self.ack_timeout_s)
                await self.js.publish_async_completed()
        except TimeoutError as exc:
            raise nats.errors.TimeoutError(
                f"JetStream stopped acknowledging task publishes of job {job_id} "
                f"({self.js.publish_async_pending()} waiting, {count} sent)"
            ) from exc
        if failures:
            raise EnqueueFailed(
                f"{len(failures)} task publishes of job {job_id} were refused: {failures[0]}",
                hint="check the MODELOPS_TASKS stream's limits ('nats stream info MODELOPS_TASKS')",
            ) from failures[0]
        return count

    async def delete_consumer(self, job_id: str) -> None:
        try:
            await self.js.delete_consumer(TASKS_STREAM, consumer_name(job_id))
        except nats.js.errors.NotFoundError:
            pass  # already gone: deleting is idempotent

    async def purge(self, job_id: str) -> int:
        # The manager's purge_stream drops the server's count; the raw API call returns it.
        request = json.dumps({"filter": task_subject(job_id)}).encode()
        reply = await self.nc.request(
            f"$JS.API.STREAM.PURGE.{TASKS_STREAM}", request, timeout=self.api_timeout_s
        )
        answer = json.loads(reply.data)
        if "error" in answer:
            raise nats.js.errors.APIError.from_error(answer["error"])
        return int(answer.get("purged", 0))

    async def queued(self, job_id: str) -> int:
        subject = task_subject(job_id)
        info = await self.js.stream_info(TASKS_STREAM, subjects_filter=subject)
        return int((info.state.subjects or {}).get(subject, 0))
