"""Runners start while the submitter still queues tasks: an empty queue means "done" only once
the submitter's enqueued marker exists (JobSpec.enqueued_marker)."""

from __future__ import annotations

import asyncio

import pytest

from modelops_contracts import blob_keys
from modelops_contracts.messages import TaskCompleted
from modelops_runner.errors import EnqueueStalled
from tests.unit.runner.test_loop import JOB, make_world, sim_task, until

MARKER = blob_keys.job_enqueued(JOB)


async def test_an_empty_queue_is_waited_on_until_the_marker_exists() -> None:
    w = make_world()
    w.queue.put_task(sim_task(1))
    run = asyncio.create_task(w.runner(enqueued_marker=w.store.uri_for(MARKER)).run())
    await until(lambda: len(w.bus.of(TaskCompleted)) == 1, "the first task done")
    await until(lambda: len(w.queue.fetches) >= 5, "several empty fetches")
    assert not run.done(), "left an empty queue before the submitter said all tasks were queued"

    # the rest of the enqueue arrives, then the marker
    w.queue.put_task(sim_task(2))
    await until(lambda: len(w.bus.of(TaskCompleted)) == 2, "the late task done")
    assert not run.done()
    await w.store.put_bytes(MARKER, b'{"enqueued": 2}')
    assert await run == "drained"
    # read once more after it appeared, then never again (earlier reads found nothing)
    put_at = w.journal.index(("put", MARKER))
    reads_after = [i for i, e in enumerate(w.journal) if e == ("exists", MARKER) and i > put_at]
    assert len(reads_after) == 1, w.journal[put_at:]


async def test_without_a_marker_in_the_spec_an_empty_queue_ends_the_run_at_once() -> None:
    w = make_world()
    w.queue.put_task(sim_task(1))
    assert await w.runner().run() == "drained"
    assert not any(kind == "exists" for kind, _ in w.journal)


async def test_a_queue_empty_too_long_without_the_marker_gives_up_with_exit_1() -> None:
    w = make_world()
    runner = w.runner(enqueued_marker=w.store.uri_for(MARKER), enqueue_wait_s=0.05)
    with pytest.raises(EnqueueStalled, match="has not marked the job fully queued") as info:
        await runner.run()
    assert info.value.exit_status == 1


async def test_tasks_arriving_restart_the_wait_for_the_marker() -> None:
    # the submitter queues slowly (a large job): the queue runs empty now and then, but
    # tasks keep coming, so the runner must not give up counting from the first empty fetch
    w = make_world()
    run = asyncio.create_task(
        w.runner(enqueued_marker=w.store.uri_for(MARKER), enqueue_wait_s=0.3).run()
    )
    for seed in range(6):
        await asyncio.sleep(0.1)
        w.queue.put_task(sim_task(seed))
        await until(lambda: len(w.bus.of(TaskCompleted)) > seed or run.done(), "the task")  # noqa: B023
        assert not run.done(), "gave up while tasks were still arriving"
    await w.store.put_bytes(MARKER, b'{"enqueued": 6}')
    assert await run == "drained"


async def test_a_cancelled_job_ends_the_wait() -> None:
    w = make_world()
    run = asyncio.create_task(w.runner(enqueued_marker=w.store.uri_for(MARKER)).run())
    await until(lambda: len(w.queue.fetches) >= 2, "waiting on the empty queue")
    w.queue.gone = True
    assert await run == "cancelled"
