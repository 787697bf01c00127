"""Task results in the blob store: outputs first, then the task's record, written once.

Layout (modelops_contracts.blob_keys): the outputs of the tasks stored together go into one
Parquet file per output, a pack (`packs/<xx>/<sha256>.parquet`, packing.py), and each task's
record names its rows (`<pack uri>#rows=<start>-<stop>`, modelops_contracts.outputs); an
output a worker wrote as Parquet itself stays a whole file (`results/<xx>/<task_id>/<output>
.parquet`). Then the record, `results/<xx>/<task_id>.done.json` (a `ResultRecord`), is
written last with put_if_absent: its presence means every output is stored. Results are
keyed by task id alone, so any job, and any redelivery, reuses them.

On a store that links shared puts (file://) the records of a stored batch are one *record
set*, a JSON array of up to RECORDS_PER_SET records, hard-linked at each task's key: a
small file of its own cost ext4 ~130 us of CPU per task, a link ~10 us. A reader picks its
task's record from the set. On S3 each key holds its task's record alone.

When two runners finish the same task (a redelivery while the first was still working, or
two jobs sharing a task) both write their outputs and only one record wins; the loser
reports the winner's record, so everybody publishes the same TaskCompleted.

The batch forms (`find_results`, `save_results`) serve many tasks with one store call per
step: all packs and files in one stage, then all records in the next (BlobStore.put_batch),
so the file:// store syncs the disk twice per batch instead of twice per file. Outputs that
came from the workers as raw columns (wire.py) are packed and written as Parquet here, the
whole batch in one thread hop, while pyarrow is warm in the CPU's caches.

Records stored before record sets (`results/<xx>/<task_id>/_done.json`) are not looked up
here: the submitter finds those when it checks the cache, so their tasks are not queued.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
import structlog

from modelops_contracts import TaskMetrics, output_ref
from modelops_contracts.jobs import blob_keys
from modelops_runtime.blobstore import BlobNotFound, BlobPut, BlobStore, BlobStoreError

from .packing import Pack, Placed, pack_outputs

if TYPE_CHECKING:
    from .tables import Compression

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
    """A task's record (`blob_keys.result_done`): where a task's outputs are and who made them.

    `job_id` and `attempt` identify the run that stored it, so a redelivery of that same
    task message can publish exactly the TaskCompleted the first run published (same event
    id: JetStream stores it once).
    """

    task_id: str
    job_id: str
    attempt: int
    outputs: dict[str, str]  # output name -> reference (modelops_contracts.outputs)
    metrics: TaskMetrics = TaskMetrics()
    runner_id: str = ""
    time: str = ""
    correlation_id: str = ""
    version: int = 2  # 2: outputs may be rows of packs; 1: whole files only


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ResultRecord | list[ResultRecord])

RECORDS_PER_SET = 16
"""At most this many records in one record set: a reader of one task's record reads them all
(16 SIR records are ~9 KB; writing costs ext4 ~65 us per set plus ~11 us per task)."""


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
        found = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        log.warning("result.record_unreadable", key=key, error=str(exc), action="recompute")
        return None
    if isinstance(found, ResultRecord):
        found = [found]
    for record in found:
        if record.task_id == task_id:
            return record
    names = [record.task_id for record in found[:3]]
    log.warning("result.record_mismatch", key=key, names=names, action="recompute")
    return None


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
class _PackPut:
    put: BlobPut
    uri: str


@dataclass(frozen=True)
class _Plan:
    record: ResultRecord  # with its outputs' references
    outputs: list[BlobPut]  # the packs it has rows in (shared with other plans), its own files
    done: BlobPut


def _plan(
    store: BlobStore, record: ResultRecord, placed: Placed, packs: Mapping[str, _PackPut]
) -> _Plan:
    """The puts that store one task's result, and its record naming them; no I/O."""
    check_output_names([*placed.rows, *placed.files])
    files = {name: blob_keys.result_output(record.task_id, name) for name in placed.files}
    refs = {
        name: output_ref(packs[digest].uri, start, stop)
        for name, (digest, start, stop) in placed.rows.items()
    }
    refs.update((name, store.uri_for(key)) for name, key in files.items())
    record = msgspec.structs.replace(record, outputs=refs)
    used = {digest for digest, _, _ in placed.rows.values()}
    return _Plan(
        record=record,
        outputs=[
            *(packs[digest].put for digest in sorted(used)),
            *(
                BlobPut(files[name], data, content_type=PARQUET_CONTENT_TYPE)
                for name, data in placed.files.items()
            ),
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
        outputs = {put.key: put for plan in plans for put in plan.outputs}  # packs: once
        _, wrote = await store.put_batch(list(outputs.values()), _record_puts(store, plans))
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


def _record_puts(store: BlobStore, plans: list[_Plan]) -> list[BlobPut]:
    """Each plan's record put. On a store that links shared puts (file://), the records of
    up to RECORDS_PER_SET tasks go out as one record set (a JSON array) that every one of
    their keys names: one small file per set instead of one per task."""
    if len(plans) < 2 or not getattr(store, "links_shared_puts", False):
        return [plan.done for plan in plans]
    puts: list[BlobPut] = []
    for start in range(0, len(plans), RECORDS_PER_SET):
        chunk = plans[start : start + RECORDS_PER_SET]
        data = _encoder.encode([plan.record for plan in chunk])
        puts.extend(
            BlobPut(plan.done.key, data, content_type=plan.done.content_type, if_absent=True)
            for plan in chunk
        )
    return puts


def _pack_put(store: BlobStore, pack: Pack) -> _PackPut:
    key = blob_keys.result_pack(pack.digest)
    return _PackPut(BlobPut(key, pack.data, content_type=PARQUET_CONTENT_TYPE), store.uri_for(key))


def _pack_all(
    results: Sequence[tuple[ResultRecord, Mapping[str, Any]]], compression: Compression
) -> tuple[list[Placed | BadOutputTable], list[Pack]]:
    """Every task's outputs placed in packs or files (runs in a thread: pyarrow releases the
    GIL, and the runner pre-imports it)."""
    placed, packs = pack_outputs([outputs for _, outputs in results], compression=compression)
    return [p if isinstance(p, Placed) else BadOutputTable(str(p)) for p in placed], packs


async def _place(
    results: Sequence[tuple[ResultRecord, Mapping[str, Any]]], compression: Compression
) -> tuple[list[Placed | BadOutputTable], list[Pack]]:
    """_pack_all, without the thread hop when every output came as Parquet bytes."""
    if all(isinstance(o, bytes) for _, outputs in results for o in outputs.values()):
        return [Placed(files=dict(outputs)) for _, outputs in results], []
    return await asyncio.to_thread(_pack_all, results, compression)


async def save_results(
    store: BlobStore,
    results: Sequence[tuple[ResultRecord, Mapping[str, Any]]],
    *,
    compression: Compression = "snappy",
) -> list[Saved | BadOutput | BlobStoreError]:
    """Store many tasks' outputs, then their records (each unless one is already there).

    Outputs are Parquet bytes or raw columns from a worker (packed, and written as Parquet
    with `compression`, first). Answers per task, in order: what is stored now, or the error
    for that task alone (BadOutput when an output cannot be stored, BlobStoreError when the
    store failed it; the caller retries those tasks).
    """
    placed, packs = await _place(results, compression)
    pack_puts = {pack.digest: _pack_put(store, pack) for pack in packs}
    planned: list[_Plan | BadOutput] = []
    for (record, _), place in zip(results, placed, strict=True):
        if isinstance(place, BadOutput):
            planned.append(place)
            continue
        try:
            planned.append(_plan(store, record, place, pack_puts))
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
