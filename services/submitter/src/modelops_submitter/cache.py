"""Which tasks already have a stored result: those are not enqueued again.

A task is done when its record exists (runners write it last): `results/<xx>/<task_id>
.done.json`, or `results/<xx>/<task_id>/_done.json` for results stored before records moved
out of the task's folder. For a large job, one listing of each shard prefix `results/<xx>/`
(256 of them, 1000 keys a page) costs far fewer requests than a HEAD per task; for a handful
of tasks, or a shard crowded with other jobs' results, listing each task's own prefix is
cheaper. Each shard starts with the shard listing when it has enough wanted tasks, and gives
up on it once it has read more keys than the per-task listings would cost, so the cost is
never much worse than the cheaper way.

The results table needs the output names each cached task stored: those its record names
(outputs in packs, Parquet files shared by tasks, have no file of the task's own) and the
task's own files (`<output>.parquet` in its folder: results stored before packs, and outputs
a worker wrote as Parquet itself). So the records of the done tasks are read, in batches,
and a record that cannot be read makes the task not done (it runs again). On file:// a
record key may hold a record set (a JSON array: the records of the tasks a runner stored
together); `RecordReader` picks the task's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec
import structlog

from modelops_contracts import blob_keys
from modelops_runtime.blobstore import BlobStore

__all__ = ["DoneOutputs", "RecordReader", "find_done", "parse_result_key"]

log = structlog.get_logger(__name__)

RECORD_SUFFIX = ".done.json"  # results/<xx>/<task_id>.done.json
LEGACY_RECORD = "_done.json"  # results/<xx>/<task_id>/_done.json
OUTPUT_SUFFIX = ".parquet"  # results/<xx>/<task_id>/<output>.parquet: a task's own files
PAGE = 1000  # keys per listing request (S3's page size)
RECORDS_PER_READ = 256  # records per get_batch


class DoneOutputs(msgspec.Struct):
    """The part of a task's record (the runner's ResultRecord) the submitter reads:
    output name -> reference (`modelops_contracts.parse_output_ref`). Other fields are
    ignored, so the record may grow."""

    outputs: dict[str, str] = {}
    task_id: str = ""


_done_decoder = msgspec.json.Decoder(DoneOutputs | list[DoneOutputs])


class RecordReader:
    """Each task's record from the bytes at its key (a record, or a record set holding it).
    A record set that several tasks' keys hold (the same bytes) is decoded once, not once
    per task."""

    def __init__(self) -> None:
        self._sets: dict[bytes, dict[str, DoneOutputs] | ValueError] = {}

    def read(self, data: bytes, task_id: str) -> DoneOutputs:
        """`task_id`'s record in `data`; ValueError if there is none."""
        found = self._sets.get(data)
        if found is None:
            try:
                decoded = _done_decoder.decode(data)
            except ValueError as exc:  # msgspec.DecodeError
                decoded = exc
            if isinstance(decoded, DoneOutputs):
                return decoded  # a record of its own: nothing to share
            found = decoded if isinstance(decoded, ValueError) else {r.task_id: r for r in decoded}
            self._sets[data] = found
        if isinstance(found, ValueError):
            raise found
        record = found.get(task_id)
        if record is None:
            raise ValueError(f"the record set holds no record of task {task_id}")
        return record


def parse_result_key(key: str) -> tuple[str, str] | None:
    """(task_id, name) of a key of a task's result, else None. Pure. The name is the key
    itself for a record (RECORD_SUFFIX, or LEGACY_RECORD in the task's folder), else the
    file name of one of the task's own files (`<output>.parquet`)."""
    parts = key.split("/")
    if parts[0] != "results":
        return None
    if len(parts) == 3 and parts[2].endswith(RECORD_SUFFIX):
        task_id, name = parts[2][: -len(RECORD_SUFFIX)], key
    elif len(parts) == 4:
        task_id, name = parts[2], (key if parts[3] == LEGACY_RECORD else parts[3])
    else:
        return None
    return (task_id, name) if task_id[:2] == parts[1] else None


def _shard(task_id: str) -> str:
    return blob_keys.result_prefix(task_id).rsplit("/", 1)[0] + "/"  # "results/<xx>/"


@dataclass
class _Seen:
    """One task's keys seen while listing: its record (the current form wins), its files."""

    record: str = ""
    files: list[str] = field(default_factory=list)


class _Found:
    """What listing showed of each wanted task."""

    def __init__(self, wanted: set[str]) -> None:
        self.wanted = wanted
        self.tasks: dict[str, _Seen] = {}

    def add(self, key: str) -> None:
        parsed = parse_result_key(key)
        if parsed is None or parsed[0] not in self.wanted:
            return
        task_id, name = parsed
        seen = self.tasks.setdefault(task_id, _Seen())
        if name == key:
            if name.endswith(RECORD_SUFFIX) or not seen.record:
                seen.record = name
        elif name.endswith(OUTPUT_SUFFIX):
            seen.files.append(name[: -len(OUTPUT_SUFFIX)])

    def done(self) -> dict[str, _Seen]:
        return {task_id: seen for task_id, seen in self.tasks.items() if seen.record}


async def _list_tasks(store: BlobStore, wanted: Iterable[str], sem: asyncio.Semaphore) -> _Found:
    wanted = set(wanted)
    found = _Found(wanted)

    async def one(task_id: str) -> None:
        async with sem:
            async for key in store.list(blob_keys.result_prefix(task_id)):
                found.add(key)

    await asyncio.gather(*(one(t) for t in sorted(wanted)))
    return found


async def _list_shard(
    store: BlobStore, shard: str, wanted: set[str], sem: asyncio.Semaphore, shard_min: int
) -> dict[str, _Seen]:
    if len(wanted) < shard_min:
        return (await _list_tasks(store, wanted, sem)).done()
    found = _Found(wanted)
    budget = PAGE * len(wanted)  # keys we may read before per-task listing becomes cheaper
    async with sem, contextlib.aclosing(store.list(shard)) as keys:
        seen = 0
        async for key in keys:
            found.add(key)
            seen += 1
            if seen > budget:
                break
        else:
            return found.done()
    log.debug("cache.shard_crowded", shard=shard, wanted=len(wanted), keys_read=seen)
    return (await _list_tasks(store, wanted, sem)).done()


async def find_done(
    store: BlobStore,
    task_ids: Iterable[str],
    *,
    concurrency: int = 16,
    shard_min: int = 8,
) -> dict[str, tuple[str, ...]]:
    """Task id -> output names, for every task in `task_ids` whose result is complete."""
    by_shard: dict[str, set[str]] = {}
    for task_id in task_ids:
        by_shard.setdefault(_shard(task_id), set()).add(task_id)
    sem = asyncio.Semaphore(concurrency)
    parts = await asyncio.gather(
        *(_list_shard(store, s, w, sem, shard_min) for s, w in sorted(by_shard.items()))
    )
    seen = {task_id: found for part in parts for task_id, found in part.items()}
    records = sorted((task_id, found.record) for task_id, found in seen.items())
    chunks = [records[i : i + RECORDS_PER_READ] for i in range(0, len(records), RECORDS_PER_READ)]
    done: dict[str, tuple[str, ...]] = {}
    for names in await asyncio.gather(*(_read_names(store, c, sem) for c in chunks)):
        for task_id, outputs in names.items():
            if outputs is not None:  # the record's names, and any file it does not name
                done[task_id] = tuple(sorted({*outputs, *seen[task_id].files}))
    return done


async def _read_names(
    store: BlobStore, records: list[tuple[str, str]], sem: asyncio.Semaphore
) -> dict[str, tuple[str, ...] | None]:
    """Output names from each (task id, record key); None for a record that cannot be read."""
    async with sem:
        found = await store.get_batch([key for _, key in records])
    names: dict[str, tuple[str, ...] | None] = {}
    reader = RecordReader()
    for (task_id, _), data in zip(records, found, strict=True):
        if data is None:  # gone since the listing
            log.warning("cache.record_unreadable", task_id=task_id, reason="missing")
            names[task_id] = None
            continue
        try:
            names[task_id] = tuple(reader.read(data, task_id).outputs)
        except ValueError as exc:  # msgspec.DecodeError, or no record of this task in a set
            log.warning("cache.record_unreadable", task_id=task_id, reason=str(exc))
            names[task_id] = None
    return names
