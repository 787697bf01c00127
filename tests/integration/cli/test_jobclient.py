"""JobClient against a real nats-server: event replay and follow, job records, refusals."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest

from modelops_cli.config import load_config
from modelops_cli.errors import UnknownJob
from modelops_cli.jobclient import JobClient
from modelops_cli.jobstate import JobView
from modelops_contracts import (
    JobCompleted,
    JobRecord,
    JobSubmitted,
    TaskCompleted,
    TaskFailed,
    encode,
    new_job_id,
)
from modelops_contracts.subjects import KV_JOBS
from modelops_runtime.nats_setup import ensure_jetstream
from modelops_runtime.processes import NatsServer

REF = "local/sir@sha256:" + "0" * 64


@pytest.fixture
async def client(
    nats_server: NatsServer, nats_client: nats.NATS, tmp_path: Path
) -> AsyncIterator[JobClient]:
    await ensure_jetstream(nats_client.jetstream())
    cfg = load_config(tmp_path, env={"MODELOPS_NATS_URL": nats_server.url})
    async with JobClient.open(cfg) as c:
        yield c


async def _publish(js, *events) -> int:  # type: ignore[no-untyped-def]
    seq = 0
    for event in events:
        ack = await js.publish(event.subject, encode(event), headers={"Nats-Msg-Id": event.id})
        seq = seq or ack.seq
    return seq


async def _record(js, job_id: str, start: int, state: str = "running") -> None:  # type: ignore[no-untyped-def]
    kv = await js.key_value(KV_JOBS)
    record = JobRecord(
        job_id=job_id,
        state=state,
        bundle_ref=REF,
        n_tasks=3,
        created="2026-01-01T00:00:00Z",
        updated="2026-01-01T00:00:00Z",
        events_start_seq=start,
    )  # type: ignore[arg-type]
    await kv.put(job_id, encode(record))


def _events(job_id: str) -> list:  # type: ignore[type-arg]
    return [
        JobSubmitted(correlation_id="c", job_id=job_id, bundle_ref=REF, n_tasks=3),
        TaskCompleted(correlation_id="c", job_id=job_id, task_id="a"),
        TaskFailed(
            correlation_id="c", job_id=job_id, task_id="b", failure="model_error", message="boom"
        ),
        TaskCompleted(correlation_id="c", job_id=job_id, task_id="c"),
    ]


async def test_replay_ends_at_the_end_of_history(client: JobClient, nats_client: nats.NATS) -> None:
    js = nats_client.jetstream()
    job = new_job_id()
    start = await _publish(js, *_events(job))
    await _publish(js, *_events(new_job_id()))  # another job's events are not ours
    replayed = [e async for e in client.events(job, start_seq=start, follow=False)]
    assert [type(e).__name__ for e in replayed] == [
        "JobSubmitted",
        "TaskCompleted",
        "TaskFailed",
        "TaskCompleted",
    ]
    assert [e async for e in client.events(new_job_id(), follow=False)] == []
    await _record(js, job, start)
    failures = await client.failures(job)
    assert [f.task_id for f in failures] == ["b"]


async def test_follow_waits_for_completion_and_counts(
    client: JobClient, nats_client: nats.NATS
) -> None:
    js = nats_client.jetstream()
    job = new_job_id()
    events = _events(job)
    start = await _publish(js, *events[:2])
    await _record(js, job, start)
    caught_up = asyncio.Event()

    def on_update(view: JobView) -> None:
        if view.done >= 1:
            caught_up.set()  # the follower has read the history so far

    follower = asyncio.create_task(client.follow(job, on_update=on_update))
    await asyncio.wait_for(caught_up.wait(), 10)
    await _publish(
        js,
        *events[2:],
        JobCompleted(correlation_id="c", job_id=job, total=3, completed=2, failed=1),
    )
    view = await asyncio.wait_for(follower, 10)
    assert (view.state, view.done, view.failed, view.ok) == ("completed", 3, 1, False)
    assert view.failed_ids == {"b"}


async def test_records_and_unknown_jobs(client: JobClient, nats_client: nats.NATS) -> None:
    js = nats_client.jetstream()
    job = new_job_id()
    await _record(js, job, 1, state="completed")
    kv = await js.key_value(KV_JOBS)
    await kv.put("not-a-record", b'{"idempotency": "x"}')
    assert (await client.record(job)).state == "completed"
    assert job in [r.job_id for r in await client.records()]
    with pytest.raises(UnknownJob, match="no job 'job-000000000000'"):
        await client.record("job-000000000000")


async def test_a_record_lagging_behind_job_completed_counts_as_finished(
    client: JobClient, nats_client: nats.NATS
) -> None:
    js = nats_client.jetstream()
    job = new_job_id()
    start = await _publish(
        js, JobCompleted(correlation_id="c", job_id=job, total=3, completed=3, failed=0)
    )
    await _record(js, job, start, state="running")
    record = await client.finished_record(job)
    assert (record.state, record.completed) == ("completed", 3)
