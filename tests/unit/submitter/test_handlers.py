"""SubmitJob / CancelJob handlers and the tracking around them, with in-memory ports."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from modelops_contracts import (
    CancelJob,
    CommandRejected,
    JobCancelled,
    JobCompleted,
    JobProgress,
    JobSubmitted,
    LaunchOptions,
    ParameterSet,
    SimTask,
    SimulationStudy,
    SubmitJob,
    TaskCompleted,
    TaskFailed,
    blob_keys,
    decode,
    encode,
)
from modelops_contracts.jobs import runner_held_limit
from modelops_submitter.consume import handle_command, handle_event
from modelops_submitter.errors import CommandInvalid
from modelops_submitter.handlers import on_cancel_job, on_submit_job

from .fakes import DIGEST, REF, FakeBundles, ManualClock, make_deps, sir_index


def study(n_sets: int = 3, reps: int = 2) -> SimulationStudy:
    return SimulationStudy(
        model="model:StochasticSIR",
        scenario="lockdown",
        parameter_sets=[
            ParameterSet(params={"beta": 0.1 + i / 10, "gamma": 0.1}) for i in range(n_sets)
        ],
        n_replicates=reps,
        name="unit",
    )


def submit(**kw: object) -> SubmitJob:
    return SubmitJob(
        correlation_id=kw.pop("correlation_id", "corr-1"),  # type: ignore[arg-type]
        bundle_ref=kw.pop("bundle_ref", REF),  # type: ignore[arg-type]
        study=kw.pop("study", study()),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


async def finish_all(deps, job_id: str) -> None:
    """What runners do: store each queued task's result and report it."""
    for payload in list(deps.queue.messages[job_id].values()):
        task = decode(payload, SimTask)
        await deps.blobs.put_bytes(blob_keys.result_done(task.task_id), b"{}")
        await deps.events.publish(
            TaskCompleted(correlation_id="r", job_id=job_id, task_id=task.task_id)
        )
        await deps.tracking.on_event(deps.events.stream[-1])


async def wait_completed(deps, job_id: str) -> JobCompleted:
    async with asyncio.timeout(5):
        while not any(e.job_id == job_id for e in deps.events.of(JobCompleted)):
            deps.events.published.clear()
            await deps.events.published.wait()
    return next(e for e in deps.events.of(JobCompleted) if e.job_id == job_id)


async def test_submit_records_uploads_enqueues_launches_and_announces(tmp_path: Path) -> None:
    deps = make_deps(tmp_path)
    cmd = submit(options=LaunchOptions(runners=4, max_retries=3), idempotency_key="k")
    event = await on_submit_job(cmd, deps=deps)
    job_id = event.job_id
    assert isinstance(event, JobSubmitted) and deps.events.of(JobSubmitted) == [event]
    assert (event.n_tasks, event.n_cached, event.launcher) == (6, 0, "local")
    assert event.correlation_id == "corr-1" and event.bundle_ref == REF and event.study == "unit"
    record = deps.jobs.records[job_id]
    assert record.state == "running" and record.idempotency_key == "k"
    assert record.events_start_seq == 1 and record.spec_uri == event.spec_uri
    assert await deps.blobs.exists(blob_keys.job_spec(job_id))
    assert await deps.blobs.exists(blob_keys.job_tasks(job_id))
    consumer = deps.queue.consumers[job_id]
    assert consumer["max_deliver"] == 4
    # room for what each of the 4 runners holds (workers per runner unknown: taken as 8)
    assert consumer["max_ack_pending"] == 4 * runner_held_limit(8)
    queued = deps.queue.messages[job_id]
    tasks = [decode(p, SimTask) for p in queued.values()]
    assert len(tasks) == 6 and all(t.entrypoint == "model:StochasticSIR/lockdown" for t in tasks)
    assert set(queued) == {f"{job_id}:{t.task_id}" for t in tasks}
    (launch,) = deps.launchers["local"].launched
    assert launch.runners == 4 and launch.env["MODELOPS_JOB_ID"] == job_id
    assert launch.env["MODELOPS_JOB_SPEC"].endswith(f"jobs/{job_id}/spec.json")


async def test_tasks_complete_into_job_completed_with_results(tmp_path: Path) -> None:
    clock = ManualClock()
    deps = make_deps(tmp_path, clock=clock)
    job_id = (await on_submit_job(submit(), deps=deps)).job_id
    tasks = [decode(p, SimTask) for p in deps.queue.messages[job_id].values()]
    clock.now += 1
    ev = TaskCompleted(correlation_id="r", job_id=job_id, task_id=tasks[0].task_id)
    await deps.tracking.on_event(ev)
    await deps.tracking.on_event(ev)  # a redelivery
    await deps.tracking.tick()
    (progress,) = deps.events.of(JobProgress)
    assert (progress.total, progress.completed) == (6, 1)
    assert deps.jobs.records[job_id].completed == 1
    failed = TaskFailed(
        correlation_id="r",
        job_id=job_id,
        task_id=tasks[1].task_id,
        failure="crashed",
        message="segv",
    )
    await deps.tracking.on_event(failed)
    for t in tasks[2:]:
        await deps.blobs.put_bytes(blob_keys.result_done(t.task_id), b"{}")
        await deps.tracking.on_event(
            TaskCompleted(correlation_id="r", job_id=job_id, task_id=t.task_id)
        )
    clock.now += 9
    done = await wait_completed(deps, job_id)
    assert (done.total, done.completed, done.failed, done.cached) == (6, 5, 1, 0)
    assert done.correlation_id == "corr-1" and done.duration_s == pytest.approx(10, abs=1)
    assert done.results_uri == deps.blobs.uri_for(f"jobs/{job_id}/results")
    record = deps.jobs.records[job_id]
    assert (record.state, record.completed, record.failed, record.results_uri) == (
        "completed",
        5,
        1,
        done.results_uri,
    )
    assert job_id not in deps.queue.consumers  # the job's consumer is removed
    table = pq.read_table(
        io.BytesIO(await deps.blobs.get_bytes(f"jobs/{job_id}/results/tasks.parquet"))
    )
    assert sorted(table.column("status").to_pylist()) == ["completed"] * 5 + ["failed"]
    # late events of a finished job change nothing
    assert not await deps.tracking.on_event(ev)


async def test_resending_with_the_same_key_returns_the_same_job(tmp_path: Path) -> None:
    deps = make_deps(tmp_path)
    first = await on_submit_job(submit(idempotency_key="same"), deps=deps)
    again = await on_submit_job(submit(idempotency_key="same", correlation_id="corr-2"), deps=deps)
    assert again.job_id == first.job_id
    assert (again.n_tasks, again.spec_uri, again.bundle_ref) == (
        first.n_tasks,
        first.spec_uri,
        first.bundle_ref,
    )
    assert again.correlation_id == "corr-2"
    assert deps.queue.publishes == 6  # nothing enqueued twice
    assert len(deps.launchers["local"].launched) == 1


async def test_an_interrupted_submit_resumes_on_redelivery(tmp_path: Path) -> None:
    deps = make_deps(tmp_path)
    cmd = submit()

    class Crash(Exception):
        pass

    launcher = deps.launchers["local"]
    real_launch = launcher.launch

    async def crash(request):
        raise Crash

    launcher.launch = crash  # type: ignore[method-assign]
    with pytest.raises(Crash):
        await on_submit_job(cmd, deps=deps)
    job_id = next(iter(deps.jobs.records))
    assert deps.jobs.records[job_id].state == "submitted"
    launcher.launch = real_launch  # type: ignore[method-assign]
    event = await on_submit_job(cmd, deps=deps)  # the same message, redelivered
    assert event.job_id == job_id
    assert deps.jobs.records[job_id].state == "running"
    assert len(deps.queue.messages[job_id]) == 6  # de-duplicated by message id
    assert len(launcher.launched) == 1


async def test_a_study_whose_results_all_exist_completes_at_once(tmp_path: Path) -> None:
    deps = make_deps(tmp_path)
    first = await on_submit_job(submit(idempotency_key="a"), deps=deps)
    await finish_all(deps, first.job_id)
    await wait_completed(deps, first.job_id)
    second = await on_submit_job(submit(idempotency_key="b"), deps=deps)
    assert second.job_id != first.job_id
    assert (second.n_tasks, second.n_cached) == (6, 6)
    assert second.job_id not in deps.queue.messages  # nothing enqueued
    assert second.job_id not in deps.queue.consumers
    assert [r.job_id for r in deps.launchers["local"].launched] == [first.job_id]
    done = await wait_completed(deps, second.job_id)
    assert (done.total, done.completed, done.cached) == (6, 0, 6)
    kinds = [
        type(e).__name__ for e in deps.events.stream if getattr(e, "job_id", None) == second.job_id
    ]
    assert kinds == ["JobSubmitted", "JobCompleted"]


async def test_partially_cached_study_enqueues_only_the_rest(tmp_path: Path) -> None:
    deps = make_deps(tmp_path)
    job = study().bind(REF, job_id="probe")
    some = [t.task_id for t in job.tasks()][:2]
    for task_id in some:
        await deps.blobs.put_bytes(blob_keys.result_done(task_id), b"{}")
    event = await on_submit_job(submit(), deps=deps)
    assert event.n_cached == 2
    queued = {decode(p, SimTask).task_id for p in deps.queue.messages[event.job_id].values()}
    assert len(queued) == 4 and not queued & set(some)


async def test_cancel_stops_runners_purges_and_ignores_late_results(tmp_path: Path) -> None:
    deps = make_deps(tmp_path)
    job_id = (await on_submit_job(submit(), deps=deps)).job_id
    task = decode(next(iter(deps.queue.messages[job_id].values())), SimTask)
    cancelled = await on_cancel_job(
        CancelJob(correlation_id="c9", job_id=job_id, reason="enough"), deps=deps
    )
    assert isinstance(cancelled, JobCancelled) and cancelled.purged_tasks == 6
    assert deps.launchers["local"].stopped == [job_id]
    assert job_id not in deps.queue.consumers and await deps.queue.queued(job_id) == 0
    record = deps.jobs.records[job_id]
    assert (record.state, record.reason) == ("cancelled", "enough")
    late = TaskCompleted(correlation_id="r", job_id=job_id, task_id=task.task_id)
    assert not await deps.tracking.on_event(late)
    assert deps.jobs.records[job_id].completed == 0
    with pytest.raises(CommandInvalid, match="no job"):
        await on_cancel_job(CancelJob(correlation_id="c", job_id="job-unknown"), deps=deps)


async def test_tracker_state_is_rebuilt_from_the_task_index_and_events(tmp_path: Path) -> None:
    deps = make_deps(tmp_path)
    job_id = (await on_submit_job(submit(), deps=deps)).job_id
    tasks = [decode(p, SimTask) for p in deps.queue.messages[job_id].values()]
    for t in tasks[:4]:
        await deps.events.publish(
            TaskCompleted(correlation_id="r", job_id=job_id, task_id=t.task_id)
        )
        await deps.tracking.on_event(deps.events.stream[-1])
    # a new submitter process: same stores, no trackers in memory
    fresh = make_deps(tmp_path)
    fresh.jobs, fresh.events, fresh.blobs = deps.jobs, deps.events, deps.blobs
    fresh.tracking.jobs, fresh.tracking.events, fresh.tracking.blobs = (
        deps.jobs,
        deps.events,
        deps.blobs,
    )
    fresh.tracking.queue = fresh.queue = deps.queue
    assert await fresh.tracking.recover() == 1
    tracker = fresh.tracking.trackers[job_id]
    assert (tracker.completed, tracker.pending) == (4, 2)
    for t in tasks[4:]:
        await fresh.blobs.put_bytes(blob_keys.result_done(t.task_id), b"{}")
        ev = TaskCompleted(correlation_id="r", job_id=job_id, task_id=t.task_id)
        await fresh.events.publish(ev)
        await fresh.tracking.on_event(ev)
    done = await wait_completed(fresh, job_id)
    assert (done.total, done.completed) == (6, 6)


async def test_an_event_of_a_job_unknown_to_this_process_loads_it(tmp_path: Path) -> None:
    deps = make_deps(tmp_path)
    job_id = (await on_submit_job(submit(), deps=deps)).job_id
    tasks = [decode(p, SimTask) for p in deps.queue.messages[job_id].values()]
    deps.tracking.trackers.clear()  # as after a restart, before recover() ran
    ev = TaskCompleted(correlation_id="r", job_id=job_id, task_id=tasks[0].task_id)
    await deps.events.publish(ev)
    assert await handle_event(encode(ev), deps.tracking) == "ack"
    assert deps.tracking.trackers[job_id].completed == 1


# ------------------------------------------------------------------ invalid commands


async def rejected(deps, data: bytes) -> CommandRejected:
    assert await handle_command(data, deps) == "ack"
    (event,) = deps.events.of(CommandRejected)
    return event


async def test_bad_json_is_rejected_and_acked(tmp_path: Path) -> None:
    deps = make_deps(tmp_path)
    event = await rejected(deps, b"{not json")
    assert "not valid JSON" in event.reason and event.command_type == "unknown"


async def test_zero_tasks_is_rejected_naming_the_field(tmp_path: Path) -> None:
    deps = make_deps(tmp_path)
    raw = encode(submit()).replace(b'"parameter_sets":[', b'"parameter_sets":[],"x":[')
    event = await rejected(deps, raw)
    assert event.field == "study.parameter_sets" and event.correlation_id == "corr-1"
    assert event.command_type == "modelops.cmd.submit_job"


async def test_unknown_bundle_is_rejected(tmp_path: Path) -> None:
    deps = make_deps(tmp_path)
    ref = REF.replace(DIGEST, "sha256:" + "99" * 32)
    event = await rejected(deps, encode(submit(bundle_ref=ref)))
    assert event.field == "bundle_ref" and "not found" in event.reason
    assert "modelops build --push" in (event.hint or "")
    assert deps.jobs.records == {}  # nothing recorded for a refused command


async def test_unknown_tag_is_rejected_and_a_known_tag_is_pinned(tmp_path: Path) -> None:
    bundles = FakeBundles({f"models/sir@{DIGEST}": sir_index()}, tags={"models/sir:v1": DIGEST})
    deps = make_deps(tmp_path, bundles=bundles)
    event = await rejected(deps, encode(submit(bundle_ref="registry.test:5000/models/sir:v9")))
    assert "v9" in event.reason
    ok = await on_submit_job(submit(bundle_ref="registry.test:5000/models/sir:v1"), deps=deps)
    assert ok.bundle_ref == REF


async def test_missing_entrypoint_and_bad_parameters_are_rejected(tmp_path: Path) -> None:
    deps = make_deps(tmp_path)
    bad_model = SimulationStudy(
        model="model:Other", parameter_sets=[ParameterSet(params={"beta": 0.1})]
    )
    event = await rejected(deps, encode(submit(study=bad_model)))
    assert event.field == "study.model" and "model:Other" in event.reason
    deps.events.stream.clear()
    bad_param = SimulationStudy(
        model="model:StochasticSIR", parameter_sets=[ParameterSet(params={"bta": 0.1})]
    )
    event = await rejected(deps, encode(submit(study=bad_param)))
    assert event.field == "study.parameter_sets.0.params" and "bta" in event.reason


async def test_unconfigured_launcher_is_rejected(tmp_path: Path) -> None:
    deps = make_deps(tmp_path)
    event = await rejected(deps, encode(submit(options=LaunchOptions(launcher="kubernetes"))))
    assert event.field == "options.launcher"


async def test_transient_failure_is_nacked_then_given_up(tmp_path: Path) -> None:
    import nats.errors

    deps = make_deps(tmp_path)

    async def down(*a, **k):
        raise nats.errors.TimeoutError

    deps.jobs.get = down  # type: ignore[method-assign]
    data = encode(submit())
    assert await handle_command(data, deps, delivered=1, max_deliver=3) == "nak"
    assert deps.events.of(CommandRejected) == []
    assert await handle_command(data, deps, delivered=3, max_deliver=3) == "term"
    (event,) = deps.events.of(CommandRejected)
    assert "gave up after 3 attempts" in event.reason


async def test_a_bug_is_terminated_and_reported_not_redelivered(tmp_path: Path) -> None:
    deps = make_deps(tmp_path)

    async def bug(*a, **k):
        raise KeyError("oops")

    deps.jobs.get = bug  # type: ignore[method-assign]
    assert await handle_command(encode(submit()), deps) == "term"
    (event,) = deps.events.of(CommandRejected)
    assert event.reason.startswith("internal error: KeyError")


async def test_long_commands_heartbeat(tmp_path: Path) -> None:
    deps = make_deps(tmp_path)
    beats = 0
    gate = asyncio.Event()

    async def beat() -> None:
        nonlocal beats
        beats += 1
        if beats >= 2:
            gate.set()

    real = deps.jobs.get

    async def slow(job_id: str):
        await gate.wait()  # the submit only goes on once two heartbeats were sent
        return await real(job_id)

    deps.jobs.get = slow  # type: ignore[method-assign]
    async with asyncio.timeout(5):
        assert (
            await handle_command(encode(submit()), deps, heartbeat=beat, heartbeat_every_s=0.01)
            == "ack"
        )
    assert beats >= 2


async def test_resume_runners_relaunches_jobs_left_without_runners(tmp_path: Path) -> None:
    from modelops_submitter.handlers import resume_runners

    deps = make_deps(tmp_path)
    opts = LaunchOptions(runners=3, workers_per_runner=2)
    job_id = (await on_submit_job(submit(options=opts), deps=deps)).job_id
    launcher = deps.launchers["local"]
    assert await resume_runners(deps) == []  # its runners are there
    launcher.stopped.append(job_id)  # as after a clean shutdown
    launcher.launched.clear()
    assert await resume_runners(deps) == [job_id]
    (again,) = launcher.launched
    assert (again.runners, again.options) == (3, opts)
    assert again.env["MODELOPS_JOB_ID"] == job_id
    await deps.queue.purge(job_id)  # nothing left to run: no runners needed
    launcher.launched.clear()
    assert await resume_runners(deps) == []
