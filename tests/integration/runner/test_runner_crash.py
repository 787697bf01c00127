"""`kill -9` of a runner mid-job loses nothing and duplicates nothing: its tasks come back after
ack_wait, a surviving runner and a restarted one finish them, and every task is completed
exactly once (one TaskCompleted in the events stream, one stored result)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import psutil
import pytest
from runner_jobkit import (
    JobSite,
    RunnerProcess,
    completions,
    read_job_events,
    sir_tasks,
    stored_record,
)

from modelops_contracts import LaunchOptions, decode_event
from modelops_contracts.jobs import blob_keys
from modelops_contracts.messages import TaskCompleted, TaskFailed
from modelops_contracts.subjects import job_events_filter
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

N_TASKS = 30
DAYS = 60_000  # ~0.1 s per task: the job lasts long enough to kill a runner in the middle


def _finished_line(log: str) -> dict:
    lines = [json.loads(x) for x in log.splitlines() if '"runner.finished"' in x]
    assert len(lines) == 1, log[-3000:]
    return lines[0]


async def test_kill_9_mid_job_every_task_completes_exactly_once(site: JobSite, nats_client) -> None:
    tasks = sir_tasks(site.bundle(), range(N_TASKS), config={"days": DAYS})
    job = await site.queue(
        nats_client, tasks, options=LaunchOptions(task_timeout_s=60), ack_wait_s=2.0, max_deliver=5
    )
    done_by: dict[str, list[str]] = {}

    async def on_event(msg) -> None:
        event = decode_event(msg.data)
        if isinstance(event, TaskCompleted):
            done_by.setdefault(event.runner_id, []).append(event.task_id)

    sub = await nats_client.subscribe(job_events_filter(job.job_id), cb=on_event)

    def as_runner(runner_id: str, name: str) -> RunnerProcess:
        return site.runner(job, name, workers=1, extra={"MODELOPS_RUNNER_ID": runner_id})

    victim = await as_runner("victim", "victim").start()
    survivor = await as_runner("survivor", "survivor").start()
    restarted = as_runner("victim", "restarted")  # the victim's id again, as after a restart
    try:
        await wait_for(
            lambda: len(done_by.get("victim", [])) >= 3, "the victim to complete 3 tasks"
        )
        workers = psutil.Process(victim.pid).children()
        assert workers, "the victim runner has worker processes"
        victim.kill(signal.SIGKILL)
        assert await victim.wait(10) == -signal.SIGKILL
        # its workers die with it (PR_SET_PDEATHSIG): no orphan keeps running a model
        await wait_for(
            lambda: not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers),
            "the killed runner's workers to exit",
            timeout_s=10,
        )
        await restarted.start()
        assert await survivor.wait(90) == 0, survivor.log()[-4000:]
        assert await restarted.wait(90) == 0, restarted.log()[-4000:]
    finally:
        await sub.unsubscribe()
        for runner in (victim, survivor, restarted):
            await runner.aclose()

    events = await read_job_events(nats_client, job.job_id)
    assert not [e for e in events if isinstance(e, TaskFailed)]
    assert completions(events) == {t.task_id: 1 for t in tasks}  # exactly once each
    for task in tasks:
        record = await stored_record(site.blobs, task.task_id)
        assert set(record.outputs) == {"incidence", "summary"}
    # on file:// the records a runner stored together are one file, linked at each task's key
    root = Path(site.blob_uri.removeprefix("file://"))
    record_files = {(root / blob_keys.result_done(t.task_id)).stat().st_ino for t in tasks}
    assert len(record_files) < len(tasks)
    stats = [_finished_line(r.log()) for r in (survivor, restarted)]
    assert sum(s["redelivered"] for s in stats) >= 1  # the victim's tasks came back
    assert sum(s["completed"] + s["cached"] for s in stats) + len(done_by["victim"]) >= N_TASKS
    info = await nats_client.jetstream().consumer_info("MODELOPS_TASKS", job.consumer)
    assert info.num_pending == 0 and info.num_ack_pending == 0


async def test_sigterm_finishes_running_tasks_returns_the_rest_and_exits_0(
    site: JobSite, nats_client
) -> None:
    tasks = sir_tasks(site.bundle(), range(N_TASKS), config={"days": DAYS})
    job = await site.queue(nats_client, tasks, ack_wait_s=30)
    completed: list[str] = []

    async def on_event(msg) -> None:
        if isinstance(event := decode_event(msg.data), TaskCompleted):
            completed.append(event.task_id)

    sub = await nats_client.subscribe(job_events_filter(job.job_id), cb=on_event)
    try:
        async with site.running(job) as runner:
            await wait_for(lambda: len(completed) >= 4, "four completed tasks")
            runner.kill(signal.SIGTERM)
            assert await runner.wait(30) == 0, runner.log()[-3000:]
    finally:
        await sub.unsubscribe()

    finished = _finished_line(runner.log())
    assert finished["outcome"] == "stopped"
    events = await read_job_events(nats_client, job.job_id)
    done = completions(events)
    assert all(n == 1 for n in done.values()) and len(done) < N_TASKS
    info = await nats_client.jetstream().consumer_info("MODELOPS_TASKS", job.consumer)
    # the interrupted runner acked what it finished and nak'ed what it held (nak'ed messages
    # count as ack-pending until redelivered): every other task is there for the next runner
    assert info.num_pending + info.num_ack_pending == N_TASKS - len(done)

    successor = await site.run(job, "successor")
    assert successor.returncode == 0, successor.log()[-3000:]
    assert completions(await read_job_events(nats_client, job.job_id)) == {
        t.task_id: 1 for t in tasks
    }


async def test_tasks_longer_than_ack_wait_are_kept_alive_by_heartbeats(
    site: JobSite, nats_client
) -> None:
    # a few seconds each: well past the 1 s ack_wait
    tasks = sir_tasks(site.bundle(), range(2), config={"days": 25 * DAYS})
    job = await site.queue(nats_client, tasks, ack_wait_s=1.0)
    runner = await site.run(job, timeout_s=90)
    assert runner.returncode == 0, runner.log()[-3000:]

    events = await read_job_events(nats_client, job.job_id)
    done = [e for e in events if isinstance(e, TaskCompleted)]
    assert sorted(e.task_id for e in done) == sorted(job.task_ids)
    assert all(e.attempt == 1 and e.metrics.wall_s > 1.0 for e in done)  # never redelivered
    assert _finished_line(runner.log())["redelivered"] == 0


async def test_deleting_the_consumer_cancels_the_runner_which_exits_0(
    site: JobSite, nats_client
) -> None:
    # long: cancellation must not wait for them
    tasks = sir_tasks(site.bundle(), range(4), config={"days": 100 * DAYS})
    job = await site.queue(nats_client, tasks)
    js = nats_client.jetstream()
    async with site.running(job, extra={"MODELOPS_RUNNER_FETCH_TIMEOUT_S": "0.2"}) as runner:
        await wait_for(lambda: '"runner.started"' in runner.log(), "the runner to start")
        await wait_for(lambda: _ack_pending(js, job.consumer), "the runner to hold tasks")
        await js.delete_consumer("MODELOPS_TASKS", job.consumer)
        assert await runner.wait(15) == 0, runner.log()[-3000:]
    assert _finished_line(runner.log())["outcome"] == "cancelled"
    assert not [e for e in await read_job_events(nats_client, job.job_id)]


async def _ack_pending(js, consumer: str) -> int:
    return (await js.consumer_info("MODELOPS_TASKS", consumer)).num_ack_pending
