"""Task results in the blob store: outputs first, then `_done.json`, written once.

Layout (modelops_contracts.blob_keys): `results/<xx>/<task_id>/<output>.parquet` for each
output, then `results/<xx>/<task_id>/_done.json` (a `ResultRecord`), written last with
put_if_absent: its presence means every output is stored. Results are keyed by task id
alone, so any job, and any redelivery, reuses them.

When two runners finish the same task (a redelivery while the first was still working, or
two jobs sharing a task) both write identical outputs and only one record wins; the loser
reports the winner's record, so everybody publishes the same TaskCompleted.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping

import msgspec
import structlog

from modelops_contracts import TaskMetrics
from modelops_contracts.jobs import blob_keys
from modelops_runtime.blobstore import BlobNotFound, BlobStore

__all__ = [
    "PARQUET_CONTENT_TYPE",
    "BadOutputName",
    "ResultRecord",
    "check_output_names",
    "find_result",
    "save_result",
]

log = structlog.get_logger(__name__)

PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"
_OUTPUT_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}\Z")


class ResultRecord(msgspec.Struct, frozen=True, kw_only=True):
    """The `_done.json` document: where a task's outputs are and who made them.

    `job_id` and `attempt` identify the run that stored it, so a redelivery of that same
    task message can publish exactly the TaskCompleted the first run published (same event
    id: JetStream stores it once).
    """

    task_id: str
    job_id: str
    attempt: int
    outputs: dict[str, str]  # output name -> blob URI of its Parquet file
    metrics: TaskMetrics = TaskMetrics()
    runner_id: str = ""
    time: str = ""
    correlation_id: str = ""
    version: int = 1


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ResultRecord)


class BadOutputName(ValueError):
    """An output name cannot be a file name in the result folder."""


def check_output_names(names: list[str]) -> None:
    """Raise BadOutputName unless every output name is a safe, simple file stem. Pure."""
    bad = [n for n in names if not _OUTPUT_NAME_RE.match(n)]
    if bad:
        raise BadOutputName(
            f"output name(s) {bad[:5]!r} cannot name result files "
            "(hint: use letters, digits, '_', '.' and '-', starting with a letter, digit or '_')"
        )


async def find_result(store: BlobStore, task_id: str) -> ResultRecord | None:
    """The stored record of `task_id`, or None when it has none (or an unreadable one)."""
    key = blob_keys.result_done(task_id)
    try:
        data = await store.get_bytes(key)
    except BlobNotFound:
        return None
    try:
        record = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        log.warning("result.record_unreadable", key=key, error=str(exc), action="recompute")
        return None
    if record.task_id != task_id:
        log.warning("result.record_mismatch", key=key, names=record.task_id, action="recompute")
        return None
    return record


async def save_result(
    store: BlobStore, record: ResultRecord, outputs: Mapping[str, bytes]
) -> tuple[ResultRecord, bool]:
    """Store `outputs`, then `record` (with their URIs) unless a record is already there.

    Returns (the record now stored, whether this call wrote it). Blob store errors propagate
    (the caller retries the task); BadOutputName when an output cannot be stored by name.
    """
    check_output_names(list(outputs))
    task_id = record.task_id
    keys = {name: blob_keys.result_output(task_id, name) for name in outputs}
    uris = await asyncio.gather(
        *(
            store.put_bytes(keys[name], data, content_type=PARQUET_CONTENT_TYPE)
            for name, data in outputs.items()
        )
    )
    record = msgspec.structs.replace(record, outputs=dict(zip(keys, uris, strict=True)))
    done_key = blob_keys.result_done(task_id)
    payload = _encoder.encode(record)
    if await store.put_if_absent(done_key, payload, content_type="application/json"):
        return record, True
    existing = await find_result(store, task_id)
    if existing is not None:
        return existing, False
    # a record that cannot be read must not hide a good result forever: replace it
    await store.put_bytes(done_key, payload, content_type="application/json")
    return record, True
