"""JetStreamPublisher against a real nats-server: every publish returns only once its PubAck
is in, many pipeline on one reply subscription, and each way an event can go unstored
(no stream, no PubAck, the publisher closed) is a ReportError naming the event."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import nats
import pytest
from nats.js import JetStreamContext

from modelops_contracts.messages import TaskCompleted
from modelops_contracts.subjects import EVENTS_STREAM, job_event_subject
from modelops_runner.errors import ReportError
from modelops_runner.reporting import JetStreamPublisher, completed_event
from modelops_runner.results import ResultRecord
from modelops_runtime.nats_setup import connect, ensure_jetstream
from modelops_runtime.processes import NatsServer

pytestmark = pytest.mark.integration


def _event(job_id: str, task_id: str) -> TaskCompleted:
    record = ResultRecord(task_id=task_id, job_id=job_id, attempt=1, outputs={})
    return completed_event(record, job_id=job_id, correlation_id="c", attempt=1, runner_id="r")


async def _stored(js: JetStreamContext, job_id: str) -> int:
    """How many TaskCompleted events of `job_id` the events stream holds."""
    subject = job_event_subject(job_id, "task_completed")
    info = await js.stream_info(EVENTS_STREAM, subjects_filter=subject)
    return (info.state.subjects or {}).get(subject, 0)


@pytest.fixture(scope="module")
def bare_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A server without our streams: nothing stores an event published there."""
    with NatsServer(tmp_path_factory.mktemp("nats-bare")) as server:
        yield server


@pytest.fixture
async def bare_client(bare_nats: NatsServer) -> AsyncIterator[nats.NATS]:
    nc = await connect(bare_nats.url, name="pytest-bare")
    try:
        yield nc
    finally:
        await nc.close()


async def _events_stream(
    nats_client: nats.NATS, n: int
) -> tuple[JetStreamContext, JetStreamPublisher, str, list[TaskCompleted]]:
    """Our streams, a publisher, a fresh job id and `n` of its TaskCompleted events."""
    js = nats_client.jetstream()
    await ensure_jetstream(js)
    job_id = f"job-{uuid.uuid4().hex[:12]}"
    events = [_event(job_id, f"t{i}") for i in range(n)]
    return js, JetStreamPublisher(nats_client, timeout_s=5), job_id, events


async def test_concurrent_publishes_are_each_stored_once(nats_client: nats.NATS) -> None:
    js, publisher, job_id, events = await _events_stream(nats_client, 40)

    await asyncio.gather(*(publisher.publish(e) for e in events))
    await publisher.publish(events[0])  # a retried publish: JetStream keeps one copy

    assert await _stored(js, job_id) == 40
    await publisher.close()


async def test_an_event_no_stream_takes_fails_at_once(bare_client: nats.NATS) -> None:
    publisher = JetStreamPublisher(bare_client, timeout_s=30)
    event = _event("job-nowhere", "t1")
    with pytest.raises(ReportError, match="no responders") as info:
        async with asyncio.timeout(10):  # far below the PubAck timeout: the server said no
            await publisher.publish(event)
    assert event.id in str(info.value) and info.value.hint
    await publisher.close()


async def test_a_missing_puback_times_out_as_a_report_error(bare_client: nats.NATS) -> None:
    event = _event("job-silent", "t1")
    silent = await bare_client.subscribe(event.subject)  # a responder that never answers
    publisher = JetStreamPublisher(bare_client, timeout_s=0.2)
    with pytest.raises(ReportError, match=r"no PubAck within 0\.2 s"):
        await publisher.publish(event)
    await silent.unsubscribe()
    await publisher.close()


async def test_closing_the_publisher_fails_waiting_publishes(bare_client: nats.NATS) -> None:
    event = _event("job-closing", "t1")
    silent = await bare_client.subscribe(event.subject)
    publisher = JetStreamPublisher(bare_client, timeout_s=30)
    waiting = asyncio.ensure_future(publisher.publish(event))
    async with asyncio.timeout(10):
        await silent.next_msg(timeout=10)  # the event went out; its PubAck never will
    await publisher.close()
    with pytest.raises(ReportError, match="closed"):
        await waiting
    await silent.unsubscribe()


async def test_publish_many_stores_a_batch_with_one_wait(nats_client: nats.NATS) -> None:
    js, publisher, job_id, events = await _events_stream(nats_client, 30)

    assert await publisher.publish_many(events) == [None] * 30
    assert await publisher.publish_many(events[:3]) == [None] * 3  # retried: stored once
    assert await publisher.publish_many([]) == []

    assert await _stored(js, job_id) == 30
    await publisher.close()


async def test_publish_many_answers_each_event_for_itself(bare_client: nats.NATS) -> None:
    unanswered, refused = _event("job-silent-many", "t1"), _event("job-nowhere-many", "t2")
    silent = await bare_client.subscribe(unanswered.subject)  # takes it, never acknowledges
    publisher = JetStreamPublisher(bare_client, timeout_s=0.5)

    first, second = await publisher.publish_many([unanswered, refused])

    assert isinstance(first, ReportError) and "no PubAck within 0.5 s" in str(first)
    assert unanswered.id in str(first)
    assert isinstance(second, ReportError) and "no responders" in str(second)
    assert refused.id in str(second)
    await silent.unsubscribe()
    await publisher.close()
