"""Cache lookup (which tasks are done) and the results tables, on a real file:// blob store."""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
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
    output_ref,
)
from modelops_runtime.blobstore import BlobLocation, FileBlobStore
from modelops_submitter import cache
from modelops_submitter.cache import find_done, parse_result_key
from modelops_submitter.job_files import read_tracking_state, upload_job_files
from modelops_submitter.results import write_results
from modelops_submitter.task_table import index_batches, param_columns
from modelops_submitter.tracker import JobTracker

from .fakes import REF


def parquet(table: dict | pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table if isinstance(table, pa.Table) else pa.table(table), sink)
    return sink.getvalue()


async def store_result(store: FileBlobStore, task_id: str, outputs: dict[str, dict]) -> None:
    """What a runner left before packs: one Parquet per output, then its record last (here a
    record without `outputs`, so the results builder falls back to the per-task keys)."""
    for name, table in outputs.items():
        await store.put_bytes(blob_keys.result_output(task_id, name), parquet(table))
    await store.put_bytes(blob_keys.result_done(task_id), b"{}")


def record(task_id: str, outputs: dict[str, str]) -> bytes:
    """A runner's record with every ResultRecord field; the submitter reads `outputs`."""
    doc = {
        "task_id": task_id,
        "job_id": "job-r",
        "attempt": 1,
        "outputs": outputs,
        "metrics": {"wall_s": 0.02},
        "runner_id": "runner-1",
        "time": "2025-01-01T00:00:00Z",
        "correlation_id": "c",
        "version": 2,
    }
    return json.dumps(doc).encode()


async def store_files(store: FileBlobStore, task_id: str, outputs: dict[str, dict]) -> None:
    """Whole per-task files named by URI in the record (version-1 records; and outputs a
    worker wrote as Parquet itself)."""
    refs = {}
    for name, table in outputs.items():
        refs[name] = await store.put_bytes(blob_keys.result_output(task_id, name), parquet(table))
    await store.put_bytes(blob_keys.result_done(task_id), record(task_id, refs))


async def store_packed(
    store: FileBlobStore,
    results: Sequence[tuple[str, dict[str, dict]]],
    record_key: Callable[[str], str] = blob_keys.result_done,
) -> dict[str, str]:
    """What a runner leaves now for tasks it stores together: per output one pack holding
    their rows in order, then the record set naming each task's rows. Output -> pack key."""
    tables: dict[str, list[pa.Table]] = {}
    for _, outputs in results:
        for name, table in outputs.items():
            tables.setdefault(name, []).append(pa.table(table))
    keys, refs = {}, {task_id: {} for task_id, _ in results}
    for name, parts in tables.items():
        data = parquet(pa.concat_tables(parts))
        keys[name] = blob_keys.result_pack(hashlib.sha256(data).hexdigest())
        uri = await store.put_bytes(keys[name], data)
        start = 0
        for task_id, outputs in results:
            if name in outputs:
                stop = start + pa.table(outputs[name]).num_rows
                refs[task_id][name] = output_ref(uri, start, stop)
                start = stop
    if record_key is blob_keys.result_done_legacy:  # before record sets: one record each
        for task_id, _ in results:
            await store.put_bytes(record_key(task_id), record(task_id, refs[task_id]))
        return keys
    # as a runner on file:// stores them: one record set, the same bytes at every task's key
    shared = json.dumps([json.loads(record(t, refs[t])) for t, _ in results]).encode()
    for task_id, _ in results:
        await store.put_bytes(record_key(task_id), shared)
    return keys


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
    """Counts listing requests (one per started listing, plus one per further 1000 keys) and
    records the keys or URIs each get_batch asked for."""

    def __init__(self, root: Path) -> None:
        super().__init__(BlobLocation(scheme="file", root=str(root)))
        self.lists: list[str] = []
        self.gets: list[list[str]] = []

    async def list(self, prefix: str = "") -> AsyncIterator[str]:
        self.lists.append(prefix)
        async for key in super().list(prefix):
            yield key

    async def get_batch(self, keys_or_uris: Sequence[str]) -> list[bytes | None]:
        self.gets.append(list(keys_or_uris))
        return await super().get_batch(keys_or_uris)

    def read(self) -> Counter[str]:
        """How often each key was read (URIs of this store count as their keys)."""
        return Counter(k.removeprefix(self.uri + "/") for batch in self.gets for k in batch)


def test_parse_result_key() -> None:
    tid = "ab" + "0" * 62
    record = f"results/ab/{tid}.done.json"
    legacy = f"results/ab/{tid}/_done.json"
    assert parse_result_key(record) == (tid, record)
    assert parse_result_key(legacy) == (tid, legacy)
    assert parse_result_key(f"results/ab/{tid}/x.parquet") == (tid, "x.parquet")
    assert parse_result_key(f"results/cd/{tid}/x.parquet") is None  # not its shard
    assert parse_result_key(f"results/cd/{tid}.done.json") is None
    assert parse_result_key(f"results/ab/{tid}.json") is None
    assert parse_result_key("jobs/j/spec.json") is None


async def test_find_done_needs_the_done_marker(store: FileBlobStore) -> None:
    job = make_job()
    tasks = list(job.tasks())
    await store_result(
        store, tasks[0].task_id, {"summary": {"peak": [1]}, "incidence": {"d": [1, 2]}}
    )
    await store_result(store, tasks[1].task_id, {})
    # outputs without a record: a run that crashed half-way is not a result
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


@pytest.mark.parametrize("shard_min", [1, 100])  # shard listings; per-task listings
async def test_find_done_reads_the_names_of_packed_tasks_from_their_records(
    tmp_path: Path, shard_min: int
) -> None:
    store = CountingStore(tmp_path / "b")
    packed, packed_too, files, old, none, garbled, wrong, mixed, legacy = (
        f"{i:02x}" + f"{i:062x}" for i in range(9)
    )
    await store_packed(
        store,
        [(packed, {"summary": {"p": [1]}, "incidence": {"d": [1, 2]}}), (packed_too, {"s": {}})],
    )
    await store_files(store, files, {"summary": {"p": [2]}})
    await store_result(store, old, {"summary": {"p": [3]}, "extra": {"e": [1]}})
    await store.put_bytes(blob_keys.result_done(none), record(none, {}))
    await store.put_bytes(blob_keys.result_done(garbled), b"\x00 not json")
    await store.put_bytes(blob_keys.result_done(wrong), b'{"outputs": ["summary"]}')
    # one output in a pack, one a file of the task's own (a worker wrote it as Parquet)
    own = await store.put_bytes(blob_keys.result_output(mixed, "big"), parquet({"x": [1]}))
    await store.put_bytes(
        blob_keys.result_done(mixed), record(mixed, {"big": own, "small": "file:///p#rows=0-1"})
    )
    # a record stored before records left the task's folder
    await store.put_bytes(blob_keys.result_done_legacy(legacy), record(legacy, {"s": "u"}))
    ids = [packed, packed_too, files, old, none, garbled, wrong, mixed, legacy]

    done = await find_done(store, ids, shard_min=shard_min)

    assert done == {
        packed: ("incidence", "summary"),
        packed_too: ("s",),
        files: ("summary",),
        old: ("extra", "summary"),  # from the listing: its record names no outputs
        none: (),
        mixed: ("big", "small"),
        legacy: ("s",),
    }  # an unreadable record: not done, the task runs again
    # every done task's record is read once, where it is
    assert store.read() == Counter(
        [
            *(blob_keys.result_done(t) for t in ids if t != legacy),
            blob_keys.result_done_legacy(legacy),
        ]
    )


async def test_find_done_reads_a_tasks_record_from_its_record_set(store: FileBlobStore) -> None:
    a, b, c = (f"{i:02x}" + f"{i:062x}" for i in range(3))
    shared = json.dumps([json.loads(record(t, {f"out_{t[:2]}": "u"})) for t in (a, b)]).encode()
    for task_id in (a, b, c):  # c's key names a set without c's record: not done
        await store.put_bytes(blob_keys.result_done(task_id), shared)

    done = await find_done(store, [a, b, c])

    assert done == {a: ("out_00",), b: ("out_01",)}


def test_a_record_set_is_decoded_once_for_all_its_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [f"{i:02x}" + f"{i:062x}" for i in range(4)]
    shared = json.dumps([json.loads(record(t, {"o": f"u{t[:2]}"})) for t in ids[:3]]).encode()
    decodes = Counter()
    real = cache._done_decoder

    class Counting:
        def decode(self, data: bytes) -> object:
            decodes[data] += 1
            return real.decode(data)

    monkeypatch.setattr(cache, "_done_decoder", Counting())
    reader = cache.RecordReader()
    # each task's key holds its own copy of the bytes, as a store reads them
    assert [reader.read(bytes(shared), t).outputs["o"] for t in ids[:3]] == ["u00", "u01", "u02"]
    with pytest.raises(ValueError, match=f"no record of task {ids[3]}"):
        reader.read(bytes(shared), ids[3])
    assert decodes == {shared: 1}
    with pytest.raises(ValueError):  # a set that cannot be decoded fails every task in it
        reader.read(b"[{not json", ids[0])
    with pytest.raises(ValueError):
        reader.read(b"[{not json", ids[1])


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


# --- results read through the records' references: packs, whole files, the old keys ---


async def index_order(store: FileBlobStore, job_id: str) -> list[str]:
    data = await store.get_bytes(f"jobs/{job_id}/task_index.parquet")
    return pq.read_table(io.BytesIO(data), columns=["task_id"]).column("task_id").to_pylist()


def completed(
    job: SimJob,
    task_ids: Sequence[str],
    outputs: Sequence[str],
    cached: Sequence[str] = (),
    failed: Sequence[str] = (),
) -> JobTracker:
    """A finished job's tracker: every task completed with `outputs`, but the `cached` and
    `failed` ones."""
    names = tuple(outputs)
    tracker = JobTracker(
        job.job_id,
        expected=[t for t in task_ids if t not in cached],
        cached={t: names for t in cached},
    )
    for task_id in task_ids:
        if task_id in failed:
            tracker.apply(
                TaskFailed(
                    correlation_id="c",
                    job_id=job.job_id,
                    task_id=task_id,
                    failure="crash",
                    message="it broke",
                )
            )
        elif task_id not in cached:
            tracker.apply(
                TaskCompleted(
                    correlation_id="c",
                    job_id=job.job_id,
                    task_id=task_id,
                    outputs={n: "ref" for n in names},
                )
            )
    assert tracker.done
    return tracker


async def results_tables(store: FileBlobStore, *names: str) -> dict[str, pq.ParquetFile]:
    return {
        name: pq.ParquetFile(
            io.BytesIO(await store.get_bytes(f"jobs/job-r/results/{name}.parquet"))
        )
        for name in names
    }


def notes(tasks: pq.ParquetFile) -> dict[str, str | None]:
    table = tasks.read(columns=["task_id", "note"])
    return dict(zip(*(table.column(c).to_pylist() for c in ("task_id", "note")), strict=True))


def sample_outputs(i: int) -> dict[str, dict]:
    days = i % 4  # 0 to 3 rows: an empty table among them
    return {
        "summary": {"peak": pa.array([i], pa.int64()), "label": pa.array([f"t{i}"])},
        "incidence": {
            "day": pa.array(range(days), pa.int64()),
            "infected": pa.array([i * 10.0 + d for d in range(days)], pa.float64()),
        },
    }


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> int:
    import modelops_submitter.results as results

    monkeypatch.setattr(results, "BATCH_TASKS", 4)
    return 4


async def test_packed_and_mixed_results_equal_per_task_files_row_for_row(
    tmp_path: Path, small_batches: int
) -> None:
    job = make_job(n_sets=6, reps=2)  # 12 tasks, 3 batches of 4
    stores = {
        name: FileBlobStore(BlobLocation(scheme="file", root=str(tmp_path / name)))
        for name in ("old", "packs", "mixed", "legacy")
    }
    order: list[str] = []
    for store in stores.values():
        await upload_job_files(store, job, _spec(job), {})
        order = await index_order(store, job.job_id)
    out = {t: sample_outputs(i) for i, t in enumerate(order)}
    cached, failed = order[1], order[6]
    stored = [t for t in order if t != failed]

    for t in stored:
        await store_result(stores["old"], t, out[t])
    packs = stores["packs"]
    for start in range(0, len(stored), 5):  # packs straddle the builder's batches
        await store_packed(packs, [(t, out[t]) for t in stored[start : start + 5]])
    for start in range(0, len(stored), 5):  # packs, their records in the tasks' folders
        batch = [(t, out[t]) for t in stored[start : start + 5]]
        await store_packed(stores["legacy"], batch, blob_keys.result_done_legacy)
    mixed = stores["mixed"]
    await store_packed(mixed, [(t, out[t]) for t in stored[:3]])
    await store_files(mixed, stored[3], out[stored[3]])
    await store_result(mixed, stored[4], out[stored[4]])
    await store_packed(mixed, [(t, out[t]) for t in stored[5:9]])
    # one task with its summary in a pack and its incidence a whole file of its own
    split = stored[9]
    await store_packed(mixed, [(split, {"summary": out[split]["summary"]})])
    (split_record,) = json.loads(await mixed.get_bytes(blob_keys.result_done(split)))
    refs = split_record["outputs"]
    refs["incidence"] = await mixed.put_bytes(
        blob_keys.result_output(split, "incidence"), parquet(out[split]["incidence"])
    )
    await mixed.put_bytes(blob_keys.result_done(split), record(split, refs))
    await store_packed(mixed, [(t, out[t]) for t in stored[10:]])

    built = {}
    for name, store in stores.items():
        tracker = completed(job, order, ("summary", "incidence"), cached=[cached], failed=[failed])
        await write_results(store, job.job_id, tracker)
        built[name] = await results_tables(store, "tasks", "summary", "incidence")

    old = built["old"]
    assert set(notes(old["tasks"]).values()) == {None}
    assert old["incidence"].read().num_rows == sum(i % 4 for i in range(12) if i != 6)
    assert old["summary"].read().column("task_id").to_pylist() == stored
    for name in ("packs", "mixed", "legacy"):
        for table in ("tasks", "summary", "incidence"):
            assert built[name][table].read().equals(old[table].read(), check_metadata=True), (
                name,
                table,
            )
            assert built[name][table].num_row_groups == old[table].num_row_groups == 3


async def test_a_pack_shared_by_two_batches_is_read_once(
    tmp_path: Path, small_batches: int
) -> None:
    store = CountingStore(tmp_path / "b")
    job = make_job(n_sets=4, reps=2)  # 8 tasks: batches of 4, packs of 3 (the 2nd straddles)
    await upload_job_files(store, job, _spec(job), {})
    order = await index_order(store, job.job_id)
    out = {t: sample_outputs(i) for i, t in enumerate(order)}
    packs = [
        key
        for start in (0, 3, 6)
        for key in (
            await store_packed(store, [(t, out[t]) for t in order[start : start + 3]])
        ).values()
    ]
    await write_results(store, job.job_id, completed(job, order, ("summary", "incidence")))

    reads = store.read()
    assert len(packs) == 6 and all(reads[key] == 1 for key in packs), reads
    assert all(n == 1 for n in reads.values())  # each record and pack once
    assert sum(1 for key in reads if key.endswith(".done.json")) == len(order)
    assert len(store.gets) == 4  # records, then files, per batch
    tables = await results_tables(store, "tasks", "summary", "incidence")
    assert set(notes(tables["tasks"]).values()) == {None}
    summary = tables["summary"].read()
    assert summary.column("task_id").to_pylist() == order
    assert summary.column("peak").to_pylist() == list(range(8))
    incidence = tables["incidence"].read()
    assert incidence.column("infected").to_pylist() == [
        i * 10.0 + d for i in range(8) for d in range(i % 4)
    ]


async def test_a_missing_pack_is_noted_for_exactly_its_tasks(store: FileBlobStore) -> None:
    job = make_job(n_sets=7, reps=1)
    await upload_job_files(store, job, _spec(job), {})
    order = await index_order(store, job.job_id)
    out = {t: sample_outputs(i) for i, t in enumerate(order)}
    await store_packed(store, [(t, out[t]) for t in order[:3]])
    lost = await store_packed(store, [(t, out[t]) for t in order[3:6]])
    await store_packed(store, [(t, out[t]) for t in order[6:]])
    await store.delete(lost["summary"])

    await write_results(store, job.job_id, completed(job, order, ("summary", "incidence")))

    tables = await results_tables(store, "tasks", "summary", "incidence")
    by_task = notes(tables["tasks"])
    for t in order[3:6]:
        assert by_task[t] == (
            f"output 'summary' is missing from the store ({store.uri_for(lost['summary'])})"
        )
    assert {by_task[t] for t in order[:3] + order[6:]} == {None}
    summary = tables["summary"].read()
    assert summary.column("task_id").to_pylist() == order[:3] + order[6:]
    assert summary.column("peak").to_pylist() == [0, 1, 2, 6]
    assert tables["incidence"].read().num_rows == sum(i % 4 for i in range(7))


async def test_bad_references_and_unreadable_packs_are_noted_not_fatal(
    store: FileBlobStore,
) -> None:
    job = make_job(n_sets=7, reps=1)
    await upload_job_files(store, job, _spec(job), {})
    order = await index_order(store, job.job_id)
    good, bad_fragment, too_far, elsewhere, garbled, garbled_too, moved = order
    await store_packed(store, [(t, {"summary": {"peak": [i]}}) for i, t in enumerate(order)])
    pack_uri = json.loads(await store.get_bytes(blob_keys.result_done(good)))[0]["outputs"]
    pack_uri = pack_uri["summary"].partition("#")[0]
    garbage_uri = await store.put_bytes(blob_keys.result_pack("ff" * 32), b"not parquet")
    broken = {
        bad_fragment: f"{pack_uri}#rows=2-1",
        too_far: output_ref(pack_uri, 6, 8),  # the pack has 7 rows
        elsewhere: output_ref("s3://elsewhere/packs/ab/ab.parquet", 0, 1),
        garbled: output_ref(garbage_uri, 0, 1),
        garbled_too: output_ref(garbage_uri, 1, 2),
        # the store's URI as another process spelled it: a pack is found by its name
        moved: output_ref("s3://other/prefix/" + pack_uri[pack_uri.index("packs/") :], 6, 7),
    }
    for task_id, ref in broken.items():
        await store.put_bytes(blob_keys.result_done(task_id), record(task_id, {"summary": ref}))

    await write_results(store, job.job_id, completed(job, order, ("summary",)))

    tables = await results_tables(store, "tasks", "summary")
    by_task = notes(tables["tasks"])
    assert by_task[good] is None
    assert by_task[bad_fragment].startswith("output 'summary' left out of its table:")
    assert "rows=2-1" in by_task[bad_fragment]
    assert by_task[too_far] == (
        f"output 'summary' left out of its table: rows 6-8 are beyond the 7 rows of {pack_uri}"
    )
    assert by_task[moved] is None
    assert "not inside the blob store" in by_task[elsewhere]
    for task_id in (garbled, garbled_too):
        assert by_task[task_id].startswith("output 'summary' left out of its table:")
    assert len(by_task) == len(order)  # the batch is all there
    summary = tables["summary"].read()
    assert summary.column("task_id").to_pylist() == [good, moved]
    assert summary.column("peak").to_pylist() == [0, 6]  # `moved` named the pack's last row


async def test_an_unreadable_record_falls_back_to_the_task_files(store: FileBlobStore) -> None:
    job = make_job(n_sets=3, reps=1)
    await upload_job_files(store, job, _spec(job), {})
    order = await index_order(store, job.job_id)
    for i, t in enumerate(order):
        await store_result(store, t, {"summary": {"peak": [i]}})
    await store.put_bytes(blob_keys.result_done(order[0]), b"\x00 not json")
    await store.delete(blob_keys.result_done(order[1]))  # no record at all
    await write_results(store, job.job_id, completed(job, order, ("summary",)))
    tables = await results_tables(store, "tasks", "summary")
    assert set(notes(tables["tasks"]).values()) == {None}
    assert tables["summary"].read().column("peak").to_pylist() == [0, 1, 2]


async def test_tasks_without_outputs_cost_no_reads(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "b")
    job = make_job(n_sets=5, reps=2)
    await upload_job_files(store, job, _spec(job), {})
    order = await index_order(store, job.job_id)
    await write_results(store, job.job_id, completed(job, order, ()))
    assert store.gets == []
    tables = await results_tables(store, "tasks")
    assert tables["tasks"].read().column("status").to_pylist() == ["completed"] * len(order)
