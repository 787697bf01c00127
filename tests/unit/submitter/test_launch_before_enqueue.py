"""Runners are launched before the tasks are queued (their ~1 s start-up overlaps the enqueue);
the spec names the enqueued marker, written only after the last task message is queued."""

from __future__ import annotations

import json
from pathlib import Path

from modelops_contracts import JobSpec, LaunchOptions, blob_keys, decode
from modelops_submitter.handlers import on_submit_job

from .fakes import make_deps
from .test_handlers import submit


async def test_launch_comes_before_enqueue_and_the_marker_after_it(tmp_path: Path) -> None:
    deps = make_deps(tmp_path)
    order: list[str] = []
    launcher, queue = deps.launchers["local"], deps.queue
    real_launch, real_enqueue, real_put = launcher.launch, queue.enqueue, deps.blobs.put_bytes

    async def launch(request):  # type: ignore[no-untyped-def]
        order.append("launch")
        assert not queue.messages.get(request.job_id), "tasks were queued before the launch"
        await real_launch(request)

    async def enqueue(job_id, messages):  # type: ignore[no-untyped-def]
        order.append("enqueue")
        return await real_enqueue(job_id, messages)

    async def put_bytes(key, data, **kw):  # type: ignore[no-untyped-def]
        if key.endswith("enqueued.json"):
            order.append("marker")
        return await real_put(key, data, **kw)

    launcher.launch, queue.enqueue, deps.blobs.put_bytes = launch, enqueue, put_bytes
    event = await on_submit_job(submit(options=LaunchOptions(runners=2)), deps=deps)
    assert order == ["launch", "enqueue", "marker"]
    spec = decode(await deps.blobs.get_bytes(blob_keys.job_spec(event.job_id)), JobSpec)
    assert spec.enqueued_marker == deps.blobs.uri_for(blob_keys.job_enqueued(event.job_id))
    marker = json.loads(await deps.blobs.get_bytes(spec.enqueued_marker))
    assert marker == {"job_id": event.job_id, "enqueued": 6}


async def test_runners_that_all_gave_up_are_launched_again_after_the_enqueue(
    tmp_path: Path,
) -> None:
    deps = make_deps(tmp_path)
    launcher = deps.launchers["local"]
    real_enqueue = deps.queue.enqueue

    async def slow_enqueue(job_id, messages):  # type: ignore[no-untyped-def]
        n = await real_enqueue(job_id, messages)
        launcher.stopped.append(job_id)  # meanwhile every runner exited (EnqueueStalled)
        return n

    deps.queue.enqueue = slow_enqueue
    event = await on_submit_job(submit(options=LaunchOptions(runners=2)), deps=deps)
    assert [r.job_id for r in launcher.launched] == [event.job_id, event.job_id]
    assert await launcher.has_runners(event.job_id)


async def test_runners_still_running_after_the_enqueue_are_not_launched_twice(
    tmp_path: Path,
) -> None:
    deps = make_deps(tmp_path)
    event = await on_submit_job(submit(options=LaunchOptions(runners=2)), deps=deps)
    assert [r.job_id for r in deps.launchers["local"].launched] == [event.job_id]
