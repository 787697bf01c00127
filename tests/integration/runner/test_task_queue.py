"""NatsTaskQueue against a real nats-server: the pull protocol spoken directly (batches, an
empty queue, a wait for tasks to come, settling, a full consumer, a deleted one)."""

from __future__ import annotations

import asyncio
import time
import uuid

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from modelops_contracts.subjects import TASKS_STREAM, task_subject
from modelops_runner.errors import ConsumerGone
from modelops_runner.queue import NatsTaskQueue
from modelops_runtime.nats_setup import ensure_jetstream

pytestmark = pytest.mark.integration


class Job:
    """A job's task subject and consumer, as the submitter makes them."""

    def __init__(self, nc: nats.NATS, *, max_ack_pending: int = 1000) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.id = f"q-{uuid.uuid4().hex[:8]}"
        self.consumer = f"runners-{self.id}"
        self.max_ack_pending = max_ack_pending

    async def create(self) -> Job:
        await ensure_jetstream(self.js)
        await self.js.add_consumer(
            TASKS_STREAM,
            ConsumerConfig(
                durable_name=self.consumer,
                filter_subject=task_subject(self.id),
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=30,
                max_deliver=3,
                max_ack_pending=self.max_ack_pending,
            ),
        )
        return self

    async def publish(self, n: int, start: int = 0) -> None:
        for i in range(start, start + n):
            await self.js.publish(task_subject(self.id), f"task-{i}".encode())

    async def queue(self) -> NatsTaskQueue:
        return await NatsTaskQueue.bind(self.nc, stream=TASKS_STREAM, consumer=self.consumer)


async def test_a_fetch_takes_a_batch_in_order_and_what_is_there_without_waiting(
    nats_client: nats.NATS,
) -> None:
    job = await Job(nats_client).create()
    await job.publish(5)
    queue = await job.queue()
    first = await queue.fetch(3, timeout_s=10)
    assert [m.data for m in first] == [b"task-0", b"task-1", b"task-2"]
    assert [m.attempt for m in first] == [1, 1, 1]
    t0 = time.monotonic()
    rest = await queue.fetch(10, timeout_s=10)  # two are there: no wait for eight more
    assert [m.data for m in rest] == [b"task-3", b"task-4"]
    assert time.monotonic() - t0 < 5
    assert [m.stream_seq for m in first + rest] == sorted(m.stream_seq for m in first + rest)
    await queue.close()


async def test_an_empty_queue_gives_nothing_after_the_timeout(nats_client: nats.NATS) -> None:
    job = await Job(nats_client).create()
    queue = await job.queue()
    t0 = time.monotonic()
    assert await queue.fetch(4, timeout_s=0.3) == []
    assert time.monotonic() - t0 >= 0.25
    assert await queue.fetch(4, timeout_s=0.3) == []  # and again: no stale answer in the way
    await job.publish(1)
    assert [m.data for m in await queue.fetch(4, timeout_s=5)] == [b"task-0"]
    await queue.close()


async def test_a_fetch_on_an_empty_queue_gets_the_tasks_queued_while_it_waits(
    nats_client: nats.NATS,
) -> None:
    job = await Job(nats_client).create()
    queue = await job.queue()
    waiting = asyncio.ensure_future(queue.fetch(3, timeout_s=10))
    for _ in range(500):  # until its pull request waits on the server (5 s at most)
        if (await job.js.consumer_info(TASKS_STREAM, job.consumer)).num_waiting:
            break
        await asyncio.sleep(0.01)
    assert not waiting.done()
    await job.publish(3)
    async with asyncio.timeout(8):
        got = await waiting  # what the consumer had when the first one came: at least it
        while len(got) < 3:
            got += await queue.fetch(3 - len(got), timeout_s=5)
    assert [m.data for m in got] == [b"task-0", b"task-1", b"task-2"]
    await queue.close()


async def test_settling_acks_naks_and_terminates(nats_client: nats.NATS) -> None:
    job = await Job(nats_client).create()
    await job.publish(3)
    queue = await job.queue()
    acked, naked, termed = await queue.fetch(3, timeout_s=5)
    await acked.ack()
    await naked.nak()
    await termed.term()
    await acked.in_progress()  # never raises, even once settled
    again = await queue.fetch(3, timeout_s=1)
    assert [(m.data, m.attempt) for m in again] == [(b"task-1", 2)]  # only the nak'ed one
    await again[0].ack()
    state = await queue.state()
    assert state.drained
    await queue.close()


async def test_a_consumer_at_max_ack_pending_gives_nothing_rather_than_an_error(
    nats_client: nats.NATS,
) -> None:
    job = await Job(nats_client, max_ack_pending=2).create()
    await job.publish(4)
    queue = await job.queue()
    held = await queue.fetch(4, timeout_s=1)
    assert len(held) == 2  # the consumer hands out no more until some are acked
    assert await queue.fetch(2, timeout_s=0.5) == []
    await held[0].ack()
    assert [m.data for m in await queue.fetch(2, timeout_s=1)] == [b"task-2"]
    await queue.close()


async def test_a_deleted_consumer_is_consumer_gone(nats_client: nats.NATS) -> None:
    job = await Job(nats_client).create()
    await job.publish(1)
    queue = await job.queue()
    assert (await queue.limits()).max_ack_pending == 1000
    await job.js.delete_consumer(TASKS_STREAM, job.consumer)
    with pytest.raises(ConsumerGone, match="does not exist"):
        await queue.fetch(2, timeout_s=2)
    with pytest.raises(ConsumerGone):
        await queue.state()
    await queue.close()
