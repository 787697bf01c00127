"""Cache lookup (which tasks are done) and the results tables, on a real file:// blob store."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelops_contracts import (
    ParameterSet,
    SimJob,
    SimulationStudy,
    TaskCompleted,
    TaskFailed,
    blob_keys,
)
from modelops_runtime.blobstore import BlobLocation, FileBlobStore
from modelops_submitter.cache import find_done, parse_result_key
from modelops_submitter.job_files import read_tracking_state, upload_job_files
from modelops_submitter.results import write_results
from modelops_submitter.task_table import index_batches, param_columns
from modelops_submitter.tracker import JobTracker

from .fakes import REF


def parquet(table: dict) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table(table), sink)
    return sink.getvalue()


async def store_result(store: FileBlobStore, task_id: str, outputs: dict[str, dict]) -> None:
    """What a runner leaves: one Parquet per output, then _done.json last."""
    for name, table in outputs.items():
        await store.put_bytes(blob_keys.result_output(task_id, name), parquet(table))
    await store.put_bytes(blob_keys.result_done(task_id), b"{}")


@pytest.fixture
def store(tmp_path: Path) -> FileBlobStore:
    return FileBlobStore(BlobLocation(scheme="file", root=str(tmp_path / "blobs")))


def make_job(n_sets: int = 4, reps: int = 2, params: list[dict] | None = None) -> SimJob:
    sets = params or [{"beta": 0.1 * (i + 1), "gamma": 0.1, "n": i} for i in range(n_sets)]
    return SimulationStudy(
        model="model:StochasticSIR",
        parameter_sets=[ParameterSet(params=p) for p in sets],
        n_replicates=reps,
    ).bind(REF, job_id="job-r")


class CountingStore(FileBlobStore):
    """Counts listing requests (one per started listing, plus one per further 1000 keys)."""

    def __init__(self, root: Path) -> None:
        super().__init__(BlobLocation(scheme="file", root=str(root)))
        self.lists: list[str] = []

    async def list(self, prefix: str = "") -> AsyncIterator[str]:
        self.lists.append(prefix)
        async for key in super().list(prefix):
            yield key


def test_parse_result_key() -> None:
    tid = "ab" + "0" * 62
    assert parse_result_key(f"results/ab/{tid}/_done.json") == (tid, "_done.json")
    assert parse_result_key(f"results/cd/{tid}/x.parquet") is None
    assert parse_result_key("jobs/j/spec.json") is None


async def test_find_done_needs_the_done_marker(store: FileBlobStore) -> None:
    job = make_job()
    tasks = list(job.tasks())
    await store_result(
        store, tasks[0].task_id, {"summary": {"peak": [1]}, "incidence": {"d": [1, 2]}}
    )
    await store_result(store, tasks[1].task_id, {})
    # outputs without _done.json: a run that crashed half-way is not a result
    await store.put_bytes(blob_keys.result_output(tasks[2].task_id, "summary"), b"partial")
    done = await find_done(store, [t.task_id for t in tasks])
    assert done == {tasks[0].task_id: ("incidence", "summary"), tasks[1].task_id: ()}


async def test_find_done_lists_shards_for_many_tasks_and_task_prefixes_for_few(
    tmp_path: Path,
) -> None:
    store = CountingStore(tmp_path / "b")
    ids = [f"{i:02x}" + f"{j:062x}" for i in range(3) for j in range(10)]  # 3 shards x 10 tasks
    for task_id in ids[::3]:
        await store_result(store, task_id, {"o": {"x": [1]}})
    done = await find_done(store, ids, shard_min=8)
    assert set(done) == set(ids[::3])
    assert sorted(store.lists) == ["results/00/", "results/01/", "results/02/"]
    store.lists.clear()
    few = ids[:2]
    done = await find_done(store, few, shard_min=8)
    assert set(done) == {ids[0]}
    assert sorted(store.lists) == sorted(blob_keys.result_prefix(t) for t in few)


async def test_find_done_gives_up_on_a_crowded_shard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import modelops_submitter.cache as cache

    monkeypatch.setattr(cache, "PAGE", 2)  # so a crowded shard is cheap to build
    store = CountingStore(tmp_path / "b")
    crowd = [f"00{j:062x}" for j in range(40)]
    for task_id in crowd:
        await store_result(store, task_id, {})
    wanted = [f"00{j:062x}" for j in range(100, 108)] + [crowd[0]]  # 9 wanted, 1 of them done
    done = await find_done(store, wanted, shard_min=8)
    assert set(done) == {crowd[0]}
    assert store.lists[0] == "results/00/"  # tried the shard listing, then per task
    assert len(store.lists) == 1 + len(wanted)


def test_param_columns_unify_types_and_avoid_clashes() -> None:
    job = make_job(
        params=[{"beta": 1, "seed": True, "mix": "a"}, {"beta": 0.5, "seed": False, "mix": 3}]
    )
    cols = param_columns(job.tasks())
    assert cols["beta"] == ("beta", pa.float64())
    assert cols["seed"] == ("param_seed", pa.bool_())
    assert cols["mix"] == ("mix", pa.string())
    batch = next(index_batches(job, cached={}))
    assert batch.column("beta").to_pylist()[0] == 1.0
    assert set(batch.column("mix").to_pylist()) == {"a", "3"}


async def test_task_index_round_trip(store: FileBlobStore) -> None:
    job = make_job()
    tasks = list(job.tasks())
    cached = {tasks[0].task_id: ("summary",), tasks[1].task_id: ()}
    from modelops_contracts import JobSpec

    spec = JobSpec(
        job_id=job.job_id,
        bundle_ref=REF,
        entrypoints=["model:StochasticSIR"],
        n_tasks=job.n_tasks,
        task_subject="modelops.tasks.job-r",
        consumer="runners-job-r",
    )
    spec_uri = await upload_job_files(store, job, spec, cached)
    assert spec_uri == store.uri_for("jobs/job-r/spec.json")
    state = await read_tracking_state(store, job.job_id)
    assert state.cached == cached
    assert state.expected == [t.task_id for t in tasks[2:]]


async def test_results_tables_join_outputs_with_task_keys(store: FileBlobStore) -> None:
    job = make_job(n_sets=3, reps=2)
    tasks = list(job.tasks())
    cached_task, failed_task, *ran = tasks
    await store_result(store, cached_task.task_id, {"summary": {"peak": [9]}})
    for i, t in enumerate(ran):
        await store_result(
            store,
            t.task_id,
            {"summary": {"peak": [i]}, "incidence": {"day": [0, 1, 2], "infected": [i, i, i]}},
        )
    await upload_job_files(store, job, _spec(job), {cached_task.task_id: ("summary",)})
    tracker = JobTracker(
        job.job_id,
        expected=[t.task_id for t in tasks[1:]],
        cached={cached_task.task_id: ("summary",)},
    )
    tracker.apply(
        TaskFailed(
            correlation_id="c",
            job_id=job.job_id,
            task_id=failed_task.task_id,
            failure="timeout",
            message="took too long",
        )
    )
    for t in ran:
        tracker.apply(
            TaskCompleted(
                correlation_id="c",
                job_id=job.job_id,
                task_id=t.task_id,
                outputs={"summary": "x", "incidence": "y"},
            )
        )
    assert tracker.done
    uri = await write_results(store, job.job_id, tracker)
    assert uri == store.uri_for("jobs/job-r/results")

    tasks_table = pq.read_table(
        io.BytesIO(await store.get_bytes("jobs/job-r/results/tasks.parquet"))
    )
    assert tasks_table.column_names == [
        "task_id",
        "param_id",
        "beta",
        "gamma",
        "n",
        "seed",
        "replicate",
        "status",
        "failure",
        "message",
        "wall_s",
        "note",
    ]
    rows = {r["task_id"]: r for r in tasks_table.to_pylist()}
    assert len(rows) == job.n_tasks
    assert rows[cached_task.task_id]["status"] == "cached"
    assert rows[failed_task.task_id]["status"] == "failed"
    assert rows[failed_task.task_id]["failure"] == "timeout"
    assert all(rows[t.task_id]["status"] == "completed" for t in ran)
    for t in tasks:
        row = rows[t.task_id]
        assert (row["param_id"], row["seed"], row["replicate"]) == (
            t.params.param_id,
            t.seed,
            t.replicate,
        )
        assert row["beta"] == t.params.params["beta"]

    summary = pq.read_table(io.BytesIO(await store.get_bytes("jobs/job-r/results/summary.parquet")))
    assert summary.column_names == [
        "task_id",
        "param_id",
        "beta",
        "gamma",
        "n",
        "seed",
        "replicate",
        "peak",
    ]
    assert summary.num_rows == 1 + len(ran)  # cached + completed, not the failed one
    assert summary.column("task_id").to_pylist() == [cached_task.task_id] + [t.task_id for t in ran]
    incidence = pq.read_table(
        io.BytesIO(await store.get_bytes("jobs/job-r/results/incidence.parquet"))
    )
    assert incidence.num_rows == 3 * len(ran)
    assert incidence.column("task_id").to_pylist()[:3] == [ran[0].task_id] * 3
    assert incidence.column("infected").to_pylist()[3:6] == [1, 1, 1]


async def test_an_output_with_other_columns_is_noted_not_mixed_in(store: FileBlobStore) -> None:
    job = make_job(n_sets=2, reps=1)
    a, b = job.tasks()
    await store_result(store, a.task_id, {"summary": {"peak": [1]}})
    await store_result(store, b.task_id, {"summary": {"other": ["x"]}})
    await upload_job_files(store, job, _spec(job), {})
    tracker = JobTracker(job.job_id, expected=[a.task_id, b.task_id])
    for t in (a, b):
        tracker.apply(
            TaskCompleted(
                correlation_id="c", job_id=job.job_id, task_id=t.task_id, outputs={"summary": "s"}
            )
        )
    await write_results(store, job.job_id, tracker)
    summary = pq.read_table(io.BytesIO(await store.get_bytes("jobs/job-r/results/summary.parquet")))
    assert summary.column("task_id").to_pylist() == [a.task_id]
    tasks_table = pq.read_table(
        io.BytesIO(await store.get_bytes("jobs/job-r/results/tasks.parquet"))
    )
    notes = dict(
        zip(
            tasks_table.column("task_id").to_pylist(),
            tasks_table.column("note").to_pylist(),
            strict=True,
        )
    )
    assert notes[a.task_id] is None
    assert "summary" in notes[b.task_id] and "differ" in notes[b.task_id]


async def test_an_output_missing_from_the_store_is_noted(store: FileBlobStore) -> None:
    job = make_job(n_sets=1, reps=1)
    (a,) = job.tasks()
    await upload_job_files(store, job, _spec(job), {})
    tracker = JobTracker(job.job_id, expected=[a.task_id])
    tracker.apply(
        TaskCompleted(
            correlation_id="c", job_id=job.job_id, task_id=a.task_id, outputs={"summary": "s"}
        )
    )
    await write_results(store, job.job_id, tracker)
    tasks_table = pq.read_table(
        io.BytesIO(await store.get_bytes("jobs/job-r/results/tasks.parquet"))
    )
    assert "missing" in tasks_table.column("note").to_pylist()[0]
    assert not await store.exists("jobs/job-r/results/summary.parquet")


def _spec(job: SimJob):
    from modelops_contracts import JobSpec

    return JobSpec(
        job_id=job.job_id,
        bundle_ref=REF,
        entrypoints=["model:StochasticSIR"],
        n_tasks=job.n_tasks,
        task_subject=f"modelops.tasks.{job.job_id}",
        consumer=f"runners-{job.job_id}",
    )
