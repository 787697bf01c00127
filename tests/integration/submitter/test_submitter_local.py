"""A 200-task study of examples/sir through the local launcher and the real runner, then the
same study again (zero tasks run, same results), on real NATS, S3 and registry servers."""

from __future__ import annotations

import json
from collections import Counter

import nats

from modelops_contracts import (
    JobCompleted,
    JobProgress,
    JobSubmitted,
    TaskCompleted,
    blob_keys,
)
from modelops_contracts.subjects import TASKS_STREAM, task_subject
from modelops_runtime.blobstore import BlobStore
from modelops_submitter.binding import job_id_for
from modelops_submitter.launchers.local import process_start_time
from modelops_submitter.settings import Settings
from tests.integration.submitter.submitter_kit import (
    EventWatch,
    read_table,
    running_submitter,
    send,
    sir_study,
    with_options,
)
from tests.support.waiting import wait_for


def _runner_pids(settings: Settings, job_id: str) -> list[int]:
    recorded = json.loads((settings.jobs_dir / job_id / "runners.json").read_text())
    return [r["pid"] for r in recorded["runners"]]


async def test_200_tasks_locally_then_again_from_cache(
    settings: Settings, bus: nats.NATS, blobs: BlobStore, sir_bundle: str
) -> None:
    study = sir_study(50, 4, name="local-200")
    first = with_options(study, sir_bundle, runners=2, workers_per_runner=1, max_retries=1)
    job_id = job_id_for(first)
    async with running_submitter(settings), EventWatch.on(bus) as watch:
        await send(bus, first)
        submitted = await watch.first(JobSubmitted, job_id=job_id, within=30)
        assert (submitted.n_tasks, submitted.n_cached, submitted.launcher) == (200, 0, "local")
        assert submitted.correlation_id == first.correlation_id
        done = await watch.first(JobCompleted, job_id=job_id, within=120)
        assert (done.total, done.completed, done.failed, done.cached) == (200, 200, 0, 0)
        assert done.results_uri == blobs.uri_for(f"jobs/{job_id}/results")

        # every task reported, progress was bounded, runners are gone, the queue is empty
        reported = Counter(e.task_id for e in watch.matching(TaskCompleted, job_id=job_id))
        assert len(reported) == 200
        progress = watch.matching(JobProgress, job_id=job_id)
        assert progress and all(p.total == 200 for p in progress)
        assert [p.completed for p in progress] == sorted(p.completed for p in progress)
        info = await bus.jetstream().stream_info(TASKS_STREAM, subjects_filter=task_subject(job_id))
        assert not (info.state.subjects or {}).get(task_subject(job_id))
        await wait_for(
            lambda: all(process_start_time(p) is None for p in _runner_pids(settings, job_id)),
            "runners to exit after draining the queue",
            timeout_s=30,
        )
        logs = sorted(p.name for p in (settings.jobs_dir / job_id).glob("runner-*.log"))
        assert logs == ["runner-0.log", "runner-1.log"]

        async def recorded() -> bool:
            record = await (await bus.jetstream().key_value("modelops-jobs")).get(job_id)
            return json.loads(record.value)["state"] == "completed"

        await wait_for(recorded, "the job record to say completed", timeout_s=10)

        # the results tables: one row per task, and one row per output row, joined with keys
        job = study.bind(submitted.bundle_ref, job_id=job_id)
        by_id = {t.task_id: t for t in job.tasks()}
        tasks = await read_table(blobs, f"jobs/{job_id}/results/tasks.parquet")
        assert tasks.num_rows == 200
        assert set(tasks.column("task_id").to_pylist()) == set(by_id)
        assert set(tasks.column("status").to_pylist()) == {"completed"}
        for row in tasks.to_pylist():
            task = by_id[row["task_id"]]
            assert (row["param_id"], row["seed"], row["replicate"]) == (
                task.params.param_id,
                task.seed,
                task.replicate,
            )
            assert (row["beta"], row["gamma"], row["I0"]) == tuple(
                task.params.params[k] for k in ("beta", "gamma", "I0")
            )
        summary = await read_table(blobs, blob_keys.results_table(job_id, "summary"))
        assert summary.num_rows == 200
        assert summary.column_names[:7] == [
            "task_id",
            "param_id",
            "I0",
            "beta",
            "gamma",
            "seed",
            "replicate",
        ]
        assert {"peak_infected", "attack_rate"} <= set(summary.column_names)
        timeseries = await read_table(blobs, blob_keys.results_table(job_id, "timeseries"))
        per_task = Counter(timeseries.column("task_id").to_pylist())
        assert set(per_task) == set(by_id) and len(set(per_task.values())) == 1  # same days each
        seeds_per_set = Counter((t.params.param_id, t.seed) for t in job.tasks())
        assert all(n == 1 for n in seeds_per_set.values())  # distinct seeds within a set
        # the outputs were stored in packs, a file per output per stored batch, which the
        # results tables were read from; results/ holds one record per task, nothing else
        packs = [key async for key in blobs.list("packs/")]
        assert packs and len(packs) < 2 * len(by_id)
        records = [key async for key in blobs.list("results/")]
        assert sorted(records) == sorted(blob_keys.result_done(t) for t in by_id)

        # the same study again: every task is cached, nothing runs, same results
        again = with_options(study, sir_bundle, runners=2, workers_per_runner=1)
        again_id = job_id_for(again)
        await send(bus, again)
        resubmitted = await watch.first(JobSubmitted, job_id=again_id, within=30)
        assert (resubmitted.n_tasks, resubmitted.n_cached) == (200, 200)
        redone = await watch.first(JobCompleted, job_id=again_id, within=60)
        assert (redone.total, redone.completed, redone.failed, redone.cached) == (200, 0, 0, 200)
        assert not watch.matching(TaskCompleted, job_id=again_id)
        assert not (settings.jobs_dir / again_id).exists()  # no runner was launched
        summary_again = await read_table(blobs, blob_keys.results_table(again_id, "summary"))
        assert summary_again.equals(summary)
        timeseries_again = await read_table(blobs, blob_keys.results_table(again_id, "timeseries"))
        assert timeseries_again.equals(timeseries)
        tasks_again = await read_table(blobs, f"jobs/{again_id}/results/tasks.parquet")
        assert set(tasks_again.column("status").to_pylist()) == {"cached"}
        assert tasks_again.column("task_id").equals(tasks.column("task_id"))
