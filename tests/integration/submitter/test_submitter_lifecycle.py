"""Cancel mid-run (local runners), kill -9 of the submitter mid-run, and invalid SubmitJobs,
each against real servers and the real runner."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nats
import nats.js.errors

from modelops_contracts import (
    CancelJob,
    CommandRejected,
    JobCancelled,
    JobCompleted,
    JobProgress,
    JobSubmitted,
    ParameterSet,
    SimulationStudy,
    SubmitJob,
    TaskCompleted,
    encode,
)
from modelops_contracts.subjects import EVENTS_STREAM, TASKS_STREAM, command_subject, task_subject
from modelops_runtime.blobstore import BlobStore
from modelops_submitter.binding import job_id_for
from modelops_submitter.bootstrap import EVENTS_CONSUMER
from modelops_submitter.launchers.local import process_start_time
from modelops_submitter.settings import Settings
from tests.integration.submitter.submitter_kit import (
    EventWatch,
    SubmitterProcess,
    read_table,
    running_submitter,
    send,
    send_raw,
    sir_study,
    submitter_env,
    with_options,
)
from tests.support.waiting import wait_for


def runner_pids(settings: Settings, job_id: str) -> list[int]:
    path = settings.jobs_dir / job_id / "runners.json"
    return [r["pid"] for r in json.loads(path.read_text())["runners"]]


def all_gone(pids: list[int]) -> bool:
    return all(process_start_time(p) is None for p in pids)


async def record_of(bus: nats.NATS, job_id: str) -> dict:
    entry = await (await bus.jetstream().key_value("modelops-jobs")).get(job_id)
    return json.loads(entry.value)


async def test_cancel_mid_run_stops_runners_purges_and_ignores_late_results(
    settings: Settings, bus: nats.NATS, sir_bundle: str
) -> None:
    cmd = with_options(
        sir_study(100, 6, name="cancel"), sir_bundle, runners=2, workers_per_runner=1
    )
    job_id = job_id_for(cmd)
    js = bus.jetstream()
    async with running_submitter(settings), EventWatch.on(bus) as watch:
        await send(bus, cmd)
        first = await watch.first(TaskCompleted, job_id=job_id, within=60)
        pids = runner_pids(settings, job_id)
        assert not all_gone(pids)
        await send(
            bus, CancelJob(correlation_id="stop-it", job_id=job_id, reason="changed my mind")
        )
        cancelled = await watch.first(JobCancelled, job_id=job_id, within=30)
        assert cancelled.correlation_id == "stop-it" and cancelled.purged_tasks > 0
        assert all_gone(pids)  # stop() returns once the runners' process groups are gone
        info = await js.stream_info(TASKS_STREAM, subjects_filter=task_subject(job_id))
        assert not (info.state.subjects or {}).get(task_subject(job_id))  # no queued task left
        try:
            await js.consumer_info(TASKS_STREAM, f"runners-{job_id}")
            raise AssertionError("the job's consumer should be gone")
        except nats.js.errors.NotFoundError:
            pass
        before = await record_of(bus, job_id)
        assert before["state"] == "cancelled" and before["reason"] == "changed my mind"

        # a late result (a runner that finished just before it was stopped) changes nothing
        late = TaskCompleted(correlation_id="late", job_id=job_id, task_id=first.task_id, attempt=2)
        ack = await js.publish(late.subject, encode(late), headers={"Nats-Msg-Id": late.id})

        async def processed() -> bool:
            info = await js.consumer_info(EVENTS_STREAM, EVENTS_CONSUMER)
            return info.ack_floor.stream_seq >= ack.seq

        await wait_for(processed, "the tracker to consume the late event", timeout_s=10)
        assert await record_of(bus, job_id) == before
    assert not watch.matching(JobCompleted, job_id=job_id)


async def test_killing_the_submitter_mid_run_still_ends_with_exact_counts(
    settings: Settings,
    bus: nats.NATS,
    blobs: BlobStore,
    sir_bundle: str,
    s3_keys: dict,
    tmp_path: Path,
) -> None:
    cmd = with_options(
        sir_study(50, 4, name="restart"), sir_bundle, runners=1, workers_per_runner=1
    )
    job_id = job_id_for(cmd)
    env = submitter_env(settings, s3_keys)
    first = SubmitterProcess(env, tmp_path / "submitter-1.log").start()
    second: SubmitterProcess | None = None
    try:
        async with EventWatch.on(bus) as watch:
            await send(bus, cmd)
            await watch.first(JobSubmitted, job_id=job_id, within=60)
            progress = await watch.first(JobProgress, job_id=job_id, within=60)
            assert 0 < progress.completed < 200
            first.kill()  # SIGKILL: no clean-up of any kind
            pids = runner_pids(settings, job_id)
            assert not all_gone(pids)  # the runner goes on without the submitter
            reported_while_down = len(watch.matching(TaskCompleted, job_id=job_id))
            second = SubmitterProcess(env, tmp_path / "submitter-2.log").start()
            done = await watch.first(JobCompleted, job_id=job_id, within=120)
            assert (done.total, done.completed, done.failed, done.cached) == (200, 200, 0, 0)
            assert reported_while_down >= progress.completed
            assert len({e.task_id for e in watch.matching(TaskCompleted, job_id=job_id)}) == 200

        # JobCompleted goes out before the record is updated (a crash in between re-completes)
        async def recorded() -> bool:
            return (await record_of(bus, job_id))["state"] == "completed"

        await wait_for(recorded, "the job record to say completed", timeout_s=10)
        tasks = await read_table(blobs, f"jobs/{job_id}/results/tasks.parquet")
        assert tasks.num_rows == 200 and set(tasks.column("status").to_pylist()) == {"completed"}
        await wait_for(lambda: all_gone(pids), "the runner to exit", timeout_s=30)
        assert '"event": "tracker.loaded"' in second.log() or "tracker.loaded" in second.log()
    finally:
        first.terminate()
        if second is not None:
            assert second.terminate() == 0, second.log()[-3000:]


async def test_a_clean_restart_stops_local_runners_and_the_next_start_resumes_them(
    settings: Settings, bus: nats.NATS, sir_bundle: str
) -> None:
    cmd = with_options(sir_study(50, 4, name="resume"), sir_bundle, runners=1, workers_per_runner=1)
    job_id = job_id_for(cmd)
    async with EventWatch.on(bus) as watch:
        async with running_submitter(settings):
            await send(bus, cmd)
            await watch.first(TaskCompleted, job_id=job_id, within=60)
            pids = runner_pids(settings, job_id)
        assert all_gone(pids)  # a clean shutdown leaves no runner behind
        js = bus.jetstream()
        info = await js.stream_info(TASKS_STREAM, subjects_filter=task_subject(job_id))
        assert (info.state.subjects or {}).get(task_subject(job_id), 0) > 0  # tasks wait
        async with running_submitter(settings):
            done = await watch.first(JobCompleted, job_id=job_id, within=120)
            assert (done.total, done.completed, done.failed, done.cached) in {
                (200, 200, 0, 0),
                # a task stored by the stopped runner but not yet reported runs as cached
                *((200, 200 - k, 0, k) for k in range(1, 3)),
            }
            assert runner_pids(settings, job_id) != pids  # launched again
    assert len({e.task_id for e in watch.matching(TaskCompleted, job_id=job_id)}) == 200


async def test_invalid_submits_are_rejected_and_the_service_keeps_running(
    settings: Settings, bus: nats.NATS, sir_bundle: str
) -> None:
    unknown_digest = sir_bundle.rsplit("@", 1)[0] + "@sha256:" + "0" * 64
    sets = [ParameterSet(params={"beta": 0.05, "gamma": 0.1})]
    cases = {
        "unknown bundle": (
            SubmitJob(correlation_id="r1", bundle_ref=unknown_digest, study=sir_study(1, 1)),
            "bundle_ref",
        ),
        "unknown tag": (
            SubmitJob(
                correlation_id="r2",
                bundle_ref=sir_bundle.rsplit("@", 1)[0] + ":no-such-tag",
                study=sir_study(1, 1),
            ),
            "bundle_ref",
        ),
        "missing entrypoint": (
            SubmitJob(
                correlation_id="r3",
                bundle_ref=sir_bundle,
                study=SimulationStudy(model="model:NoSuchModel", parameter_sets=sets),
            ),
            "study.model",
        ),
        "bad parameter name": (
            SubmitJob(
                correlation_id="r4",
                bundle_ref=sir_bundle,
                study=SimulationStudy(
                    model="model:StochasticSIR",
                    parameter_sets=[ParameterSet(params={"betta": 0.05})],
                ),
            ),
            "study.parameter_sets.0.params",
        ),
        "out of the declared range": (
            SubmitJob(
                correlation_id="r5",
                bundle_ref=sir_bundle,
                study=SimulationStudy(
                    model="model:StochasticSIR",
                    parameter_sets=[ParameterSet(params={"beta": 0.5, "gamma": 0.1})],
                ),
            ),
            "study.parameter_sets.0.params.beta",
        ),
    }
    zero_tasks = (
        encode(cases["missing entrypoint"][0])
        .replace(b'"parameter_sets":[', b'"parameter_sets":[],"_":[')
        .replace(b'"correlation_id":"r3"', b'"correlation_id":"r6"')
    )
    async with running_submitter(settings), EventWatch.on(bus) as watch:
        for cmd, _ in cases.values():
            await send(bus, cmd)
        await send_raw(bus, command_subject("submit_job"), zero_tasks)
        await send_raw(
            bus,
            command_subject("submit_job"),
            b'{"type": "modelops.cmd.submit_job", "id": "x", oops',
        )
        for label, (cmd, field) in cases.items():
            rejected = await watch.first(
                CommandRejected, correlation_id=cmd.correlation_id, within=30
            )
            assert rejected.field == field, (label, rejected)
            assert (
                rejected.command_id == cmd.id and rejected.command_type == "modelops.cmd.submit_job"
            )
            assert rejected.reason, label
        zero = await watch.first(CommandRejected, correlation_id="r6", within=30)
        assert zero.field == "study.parameter_sets"
        bad_json = await watch.first(CommandRejected, correlation_id="uncorrelated", within=30)
        assert "JSON" in bad_json.reason
        assert "outside" in watch.matching(CommandRejected, correlation_id="r5")[0].reason

        # still serving: a valid submit goes through
        ok = with_options(
            sir_study(2, 1, name="after-rejects"), sir_bundle, runners=1, workers_per_runner=1
        )
        await send(bus, ok)
        done = await watch.first(JobCompleted, job_id=job_id_for(ok), within=60)
        assert (done.total, done.completed) == (2, 2)
    records = await (await bus.jetstream().key_value("modelops-jobs")).keys()
    assert records == [job_id_for(ok)]  # nothing was recorded for a refused command
    assert os.listdir(settings.jobs_dir) == [job_id_for(ok)]
