"""Task results in the blob store: outputs first, then `_done.json`, written once.

Layout (modelops_contracts.blob_keys): `results/<xx>/<task_id>/<output>.parquet` for each
output, then `results/<xx>/<task_id>/_done.json` (a `ResultRecord`), written last with
put_if_absent: its presence means every output is stored. Results are keyed by task id
alone, so any job, and any redelivery, reuses them.

When two runners finish the same task (a redelivery while the first was still working, or
two jobs sharing a task) both write identical outputs and only one record wins; the loser
reports the winner's record, so everybody publishes the same TaskCompleted.

The batch forms (`find_results`, `save_results`) serve many tasks with one store call per
step: all outputs in one stage, then all records in the next (BlobStore.put_batch), so the
file:// store syncs the disk twice per batch instead of twice per file. Outputs that came
from the workers as raw columns (wire.py) are written as Parquet here first, the whole
batch in one thread hop, one after another while pyarrow is warm in the CPU's caches.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog

from modelops_contracts import TaskMetrics
from modelops_contracts.jobs import blob_keys
from modelops_runtime.blobstore import BlobNotFound, BlobPut, BlobStore, BlobStoreError

__all__ = [
    "PARQUET_CONTENT_TYPE",
    "BadOutput",
    "BadOutputName",
    "BadOutputTable",
    "ResultRecord",
    "Saved",
    "check_output_names",
    "find_result",
    "find_results",
    "save_result",
    "save_results",
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


class BadOutput(ValueError):
    """A task's output cannot be stored; the task fails with kind bad_output."""


class BadOutputName(BadOutput):
    """An output name cannot be a file name in the result folder."""


class BadOutputTable(BadOutput):
    """An output that came raw from the worker cannot be written as Parquet."""


def check_output_names(names: list[str]) -> None:
    """Raise BadOutputName unless every output name is a safe, simple file stem. Pure."""
    bad = [n for n in names if not _OUTPUT_NAME_RE.match(n)]
    if bad:
        raise BadOutputName(
            f"output name(s) {bad[:5]!r} cannot name result files "
            "(hint: use letters, digits, '_', '.' and '-', starting with a letter, digit or '_')"
        )


def _read_record(key: str, task_id: str, data: bytes | None) -> ResultRecord | None:
    """The record in `data`, or None when there is none (or an unreadable one). Pure."""
    if data is None:
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


async def find_result(store: BlobStore, task_id: str) -> ResultRecord | None:
    """The stored record of `task_id`, or None when it has none (or an unreadable one)."""
    key = blob_keys.result_done(task_id)
    try:
        data = await store.get_bytes(key)
    except BlobNotFound:
        return None
    return _read_record(key, task_id, data)


async def find_results(store: BlobStore, task_ids: Sequence[str]) -> list[ResultRecord | None]:
    """find_result for many tasks in one store call (get_batch); store errors propagate."""
    keys = [blob_keys.result_done(task_id) for task_id in task_ids]
    found = await store.get_batch(keys)
    return [_read_record(*args) for args in zip(keys, task_ids, found, strict=True)]


@dataclass(frozen=True)
class Saved:
    """What save_results stored for one task: the record now stored, and whether it is ours."""

    record: ResultRecord
    wrote: bool


@dataclass(frozen=True)
class _Plan:
    record: ResultRecord  # with its outputs' URIs
    outputs: list[BlobPut]
    done: BlobPut


def _plan(store: BlobStore, record: ResultRecord, outputs: Mapping[str, bytes]) -> _Plan:
    """The puts that store one task's result, and its record naming them; no I/O."""
    check_output_names(list(outputs))
    keys = {name: blob_keys.result_output(record.task_id, name) for name in outputs}
    record = msgspec.structs.replace(
        record, outputs={name: store.uri_for(key) for name, key in keys.items()}
    )
    return _Plan(
        record=record,
        outputs=[
            BlobPut(keys[name], data, content_type=PARQUET_CONTENT_TYPE)
            for name, data in outputs.items()
        ],
        done=BlobPut(
            blob_keys.result_done(record.task_id),
            _encoder.encode(record),
            content_type="application/json",
            if_absent=True,
        ),
    )


async def _settle(store: BlobStore, plan: _Plan, wrote: bool) -> Saved:
    """The loser of a put_if_absent race reports the winner's record."""
    if wrote:
        return Saved(plan.record, True)
    existing = await find_result(store, plan.record.task_id)
    if existing is not None:
        return Saved(existing, False)
    # a record that cannot be read must not hide a good result forever: replace it
    await store.put_bytes(plan.done.key, plan.done.data, content_type=plan.done.content_type)
    return Saved(plan.record, True)


async def _save_plans(store: BlobStore, plans: list[_Plan]) -> list[Saved | BlobStoreError]:
    try:
        _, wrote = await store.put_batch(
            [put for plan in plans for put in plan.outputs], [plan.done for plan in plans]
        )
    except BlobStoreError as exc:
        if len(plans) == 1:
            return [exc]
        # one task's trouble (a key conflict, say) must not fail its batch-mates: retry alone
        log.warning("result.batch_failed", tasks=len(plans), error=str(exc), action="one by one")
        return [answer for plan in plans for answer in await _save_plans(store, [plan])]
    answers: list[Saved | BlobStoreError] = []
    for plan, done in zip(plans, wrote, strict=True):
        try:
            answers.append(await _settle(store, plan, done))
        except BlobStoreError as exc:
            answers.append(exc)
    return answers


def _encode_all(
    results: Sequence[tuple[ResultRecord, Mapping[str, Any]]], compression: str
) -> list[dict[str, bytes] | BadOutputTable]:
    """Every task's outputs as Parquet bytes (runs in a thread: pyarrow releases the GIL)."""
    from .tables import OutputTableError, encode_output  # pyarrow: the runner pre-imports it

    encoded: list[dict[str, bytes] | BadOutputTable] = []
    for _, outputs in results:
        try:
            encoded.append(
                {
                    name: encode_output(name, output, compression=compression)  # type: ignore[arg-type]
                    for name, output in outputs.items()
                }
            )
        except OutputTableError as exc:
            encoded.append(BadOutputTable(str(exc)))
    return encoded


async def _encode_raw(
    results: Sequence[tuple[ResultRecord, Mapping[str, Any]]], compression: str
) -> list[Mapping[str, bytes] | BadOutputTable]:
    """The outputs as Parquet bytes; one thread hop for the batch, none if nothing came raw."""
    if all(isinstance(o, bytes) for _, outputs in results for o in outputs.values()):
        return [outputs for _, outputs in results]
    return list(await asyncio.to_thread(_encode_all, results, compression))


async def save_results(
    store: BlobStore,
    results: Sequence[tuple[ResultRecord, Mapping[str, Any]]],
    *,
    compression: str = "snappy",
) -> list[Saved | BadOutput | BlobStoreError]:
    """Store many tasks' outputs, then their records (each unless one is already there).

    Outputs are Parquet bytes or raw columns from a worker (written as Parquet with
    `compression` first). Answers per task, in order: what is stored now, or the error for
    that task alone (BadOutput when an output cannot be stored, BlobStoreError when the
    store failed it; the caller retries those tasks).
    """
    encoded = await _encode_raw(results, compression)
    planned: list[_Plan | BadOutput] = []
    for (record, _), outputs in zip(results, encoded, strict=True):
        if isinstance(outputs, BadOutput):
            planned.append(outputs)
            continue
        try:
            planned.append(_plan(store, record, outputs))
        except BadOutputName as exc:
            planned.append(exc)
    plans = [p for p in planned if isinstance(p, _Plan)]
    saved = iter(await _save_plans(store, plans) if plans else [])
    return [next(saved) if isinstance(p, _Plan) else p for p in planned]


async def save_result(
    store: BlobStore, record: ResultRecord, outputs: Mapping[str, Any]
) -> tuple[ResultRecord, bool]:
    """Store `outputs`, then `record` (with their URIs) unless a record is already there.

    Returns (the record now stored, whether this call wrote it). Blob store errors propagate
    (the caller retries the task); BadOutput when an output cannot be stored.
    """
    (answer,) = await save_results(store, [(record, outputs)])
    if isinstance(answer, Exception):
        raise answer
    return answer.record, answer.wrote
