"""The files a job keeps in the blob store, and reading them back after a restart.

`jobs/<job_id>/job.json` (the whole SimJob, for traceability), `jobs/<job_id>/spec.json` (the
small JobSpec runners read first) and `jobs/<job_id>/task_index.parquet` (one row per task; see
task_table.py), from which a restarted submitter rebuilds its tracker without decoding every
SimTask again.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from modelops_contracts import JobSpec, SimJob, blob_keys, encode
from modelops_runtime.blobstore import BlobStore

from .task_table import CACHED_COLUMN, index_batches, index_schema, param_columns

__all__ = [
    "TrackingState",
    "encode_task_index",
    "mark_enqueued",
    "read_tracking_state",
    "task_index_key",
    "upload_job_files",
]

JSON = "application/json"


def task_index_key(job_id: str) -> str:
    return f"jobs/{job_id}/task_index.parquet"


def encode_task_index(job: SimJob, cached: Mapping[str, Iterable[str]]) -> bytes:
    """The task index of `job` as Parquet bytes (a few MB for 100k tasks)."""
    params = param_columns(job.tasks())
    sink = io.BytesIO()
    with pq.ParquetWriter(sink, index_schema(params), compression="zstd") as writer:
        for batch in index_batches(job, cached=cached, params=params):
            writer.write_batch(batch)
    return sink.getvalue()


async def upload_job_files(
    store: BlobStore, job: SimJob, spec: JobSpec, cached: Mapping[str, Iterable[str]]
) -> str:
    """Upload job.json, the task index and spec.json (last: runners start from it); its URI.

    Encoding a large job takes a moment (0.3 s for 100k tasks): it runs in a thread so the
    event loop keeps serving heartbeats and task events meanwhile.
    """
    job_json = await asyncio.to_thread(encode, job)
    await store.put_bytes(blob_keys.job_tasks(job.job_id), job_json, content_type=JSON)
    del job_json
    index = await asyncio.to_thread(encode_task_index, job, cached)
    await store.put_bytes(
        task_index_key(job.job_id), index, content_type="application/vnd.apache.parquet"
    )
    return await store.put_bytes(blob_keys.job_spec(job.job_id), encode(spec), content_type=JSON)


async def mark_enqueued(store: BlobStore, job_id: str, enqueued: int) -> str:
    """Tell the job's runners every task is queued: from now on an empty queue means done."""
    body = json.dumps({"job_id": job_id, "enqueued": enqueued}).encode()
    return await store.put_bytes(blob_keys.job_enqueued(job_id), body, content_type=JSON)


class TrackingState:
    """What the tracker needs of a job: tasks to wait for, and tasks cached at submit."""

    def __init__(self, expected: list[str], cached: dict[str, tuple[str, ...]]) -> None:
        self.expected = expected
        self.cached = cached


def _tracking_state(data: bytes) -> TrackingState:
    table = pq.read_table(pa.BufferReader(data), columns=["task_id", CACHED_COLUMN])
    expected: list[str] = []
    cached: dict[str, tuple[str, ...]] = {}
    for task_id, outputs in zip(
        table.column("task_id").to_pylist(), table.column(CACHED_COLUMN).to_pylist(), strict=True
    ):
        if outputs is None:
            expected.append(task_id)
        else:
            cached[task_id] = tuple(n for n in outputs.split(",") if n)
    return TrackingState(expected, cached)


async def read_tracking_state(store: BlobStore, job_id: str) -> TrackingState:
    """Tasks of a job, split into enqueued and cached-at-submit, from its task index."""
    return _tracking_state(await store.get_bytes(task_index_key(job_id)))
