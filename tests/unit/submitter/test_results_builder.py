"""Results tables built while the job runs: the leading batches whose tasks are all done are
written early, and the finished files are the same as writing everything at the end (and the
same whether the outputs were stored in packs or as per-task files)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pyarrow.parquet as pq

from modelops_contracts import (
    JobCompleted,
    LaunchOptions,
    ParameterSet,
    SimTask,
    SimulationStudy,
    SubmitJob,
    TaskCompleted,
    decode,
)
from modelops_runtime.blobstore import BlobLocation, FileBlobStore
from modelops_submitter.handlers import on_submit_job
from modelops_submitter.job_files import upload_job_files
from modelops_submitter.results import BATCH_TASKS, ResultsBuilder, write_results
from modelops_submitter.tracker import JobTracker

from .fakes import REF, ManualClock, make_deps
from .test_cache_and_results import _spec, index_order, make_job, store_packed, store_result


def _done(tracker: JobTracker, job_id: str, task_id: str) -> None:
    tracker.apply(
        TaskCompleted(correlation_id="c", job_id=job_id, task_id=task_id, outputs={"summary": "s"})
    )


async def _tables(store: FileBlobStore) -> dict[str, list[dict]]:
    out = {}
    for name in ("tasks", "summary"):
        data = await store.get_bytes(f"jobs/job-r/results/{name}.parquet")
        out[name] = pq.read_table(io.BytesIO(data)).to_pylist()
    return out


async def test_batches_are_written_as_they_finish_and_the_tables_match_a_late_write(
    tmp_path: Path,
) -> None:
    job = make_job(n_sets=BATCH_TASKS + 100, reps=1)  # 612 tasks: two batches
    tasks = list(job.tasks())
    stores = [
        FileBlobStore(BlobLocation(scheme="file", root=str(tmp_path / name)))
        for name in ("early", "late")
    ]
    for store in stores:
        await upload_job_files(store, job, _spec(job), {})
    early, late = stores
    order = await index_order(early, job.job_id)
    outputs = {t: {"summary": {"peak": [i], "task": [t]}} for i, t in enumerate(order)}
    # early: as runners store results now, in packs of 50 tasks (one straddles the batches);
    # late: as they did before, one file per task
    for start in range(0, len(order), 50):
        await store_packed(early, [(t, outputs[t]) for t in order[start : start + 50]])
    for t in order:
        await store_result(late, t, outputs[t])
    tracker = JobTracker(job.job_id, expected=[t.task_id for t in tasks])
    builder = ResultsBuilder(early, job.job_id)

    # the first batch (in index order) is only written once every task in it is done
    for task_id in order[: BATCH_TASKS - 1]:
        _done(tracker, job.job_id, task_id)
    assert await builder.advance(tracker) == 0
    _done(tracker, job.job_id, order[BATCH_TASKS - 1])
    assert await builder.advance(tracker) == 1
    assert await builder.advance(tracker) == 0  # the next batch is not complete

    for task_id in order[BATCH_TASKS:]:
        _done(tracker, job.job_id, task_id)
    assert tracker.done
    await builder.finish(tracker)
    await write_results(late, job.job_id, tracker)
    built, written = await _tables(early), await _tables(late)
    assert built == written
    assert [r["task_id"] for r in built["summary"]] == order
    assert [r["peak"] for r in built["summary"]] == list(range(len(order)))
    assert {r["note"] for r in built["tasks"]} == {None}
    assert len(built["tasks"]) == len(tasks)
    summary_file = pq.ParquetFile(
        io.BytesIO(await early.get_bytes("jobs/job-r/results/summary.parquet"))
    )
    assert summary_file.num_row_groups == 2  # one per batch, not one per task


async def test_tracking_writes_finished_batches_while_the_job_runs(tmp_path: Path) -> None:
    clock = ManualClock()
    deps = make_deps(tmp_path, clock=clock)
    study = SimulationStudy(
        model="model:StochasticSIR",
        parameter_sets=[
            ParameterSet(params={"beta": 0.1 + i / 1000, "gamma": 0.1})
            for i in range(BATCH_TASKS + 50)
        ],
        n_replicates=1,
    )
    cmd = SubmitJob(
        correlation_id="c", bundle_ref=REF, study=study, options=LaunchOptions(runners=1)
    )
    job_id = (await on_submit_job(cmd, deps=deps)).job_id
    queued = [decode(p, SimTask) for p in deps.queue.messages[job_id].values()]

    async def finish(tasks: list[SimTask]) -> None:
        for start in range(0, len(tasks), 50):  # as a runner stores them: in packs
            group = tasks[start : start + 50]
            await store_packed(
                deps.blobs, [(t.task_id, {"summary": {"peak": [t.seed % 100]}}) for t in group]
            )
        for task in tasks:
            await deps.tracking.on_event(
                TaskCompleted(
                    correlation_id="r",
                    job_id=job_id,
                    task_id=task.task_id,
                    outputs={"summary": "s"},
                )
            )

    await finish(queued[:BATCH_TASKS])  # enqueue order is index order: the first batch
    clock.now += 1.0
    await deps.tracking.tick()
    advancing = deps.tracking.live_results.advancing(job_id)
    assert advancing is not None, "no results batch started while the job ran"
    assert await advancing == 1
    await finish(queued[BATCH_TASKS:])
    async with asyncio.timeout(10):
        while not deps.events.of(JobCompleted):
            deps.events.published.clear()
            await deps.events.published.wait()
    summary = pq.read_table(
        io.BytesIO(await deps.blobs.get_bytes(f"jobs/{job_id}/results/summary.parquet"))
    )
    assert summary.column("task_id").to_pylist() == [t.task_id for t in queued]
    assert summary.column("peak").to_pylist() == [t.seed % 100 for t in queued]
    assert not deps.tracking.live_results.busy
