"""Which tasks already have a stored result: those are not enqueued again.

A task is done when `results/<xx>/<task_id>/_done.json` exists (runners write it last). For a
large job, one listing of each shard prefix `results/<xx>/` (256 of them, 1000 keys a page)
costs far fewer requests than a HEAD per task; for a handful of tasks, or a shard crowded with
other jobs' results, listing each task's own prefix is cheaper. Each shard starts with the
shard listing when it has enough wanted tasks, and gives up on it once it has read more keys
than the per-task listings would cost, so the cost is never much worse than the cheaper way.

The results table needs the output names each cached task stored. Listing yields them for a
task whose outputs are files in its own folder (`<name>.parquet`: results stored before packs,
and outputs a worker wrote as Parquet itself). A task whose outputs went into packs (Parquet
files shared by tasks, `packs/<xx>/<sha>.parquet`) has only `_done.json` in its folder, as
has a task without outputs: for those the names are read from the record's `outputs`, in
batches, and a record that cannot be read makes the task not done (it runs again).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

import msgspec
import structlog

from modelops_contracts import blob_keys
from modelops_runtime.blobstore import BlobStore

__all__ = ["DONE_MARKER", "DoneOutputs", "decode_done", "find_done", "parse_result_key"]

log = structlog.get_logger(__name__)

DONE_MARKER = "_done.json"
OUTPUT_SUFFIX = ".parquet"
PAGE = 1000  # keys per listing request (S3's page size)
RECORDS_PER_READ = 256  # `_done.json` records per get_batch


class DoneOutputs(msgspec.Struct):
    """The part of a task's `_done.json` (the runner's ResultRecord) the submitter reads:
    output name -> reference (`modelops_contracts.parse_output_ref`). Other fields are
    ignored, so the record may grow."""

    outputs: dict[str, str] = {}


_done_decoder = msgspec.json.Decoder(DoneOutputs)


def decode_done(data: bytes) -> DoneOutputs:
    """A `_done.json` record; msgspec.DecodeError (a ValueError) if it is not one."""
    return _done_decoder.decode(data)


def parse_result_key(key: str) -> tuple[str, str] | None:
    """(task_id, file name) of a key `results/<xx>/<task_id>/<name>`, else None."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != "results" or parts[2][:2] != parts[1]:
        return None
    return parts[2], parts[3]


def _shard(task_id: str) -> str:
    return blob_keys.result_prefix(task_id).rsplit("/", 2)[0] + "/"  # "results/<xx>/"


class _Found:
    """Files seen per wanted task while listing."""

    def __init__(self, wanted: set[str]) -> None:
        self.wanted = wanted
        self.files: dict[str, list[str]] = {}

    def add(self, key: str) -> None:
        parsed = parse_result_key(key)
        if parsed is not None and parsed[0] in self.wanted:
            self.files.setdefault(parsed[0], []).append(parsed[1])

    def done(self) -> dict[str, tuple[str, ...]]:
        out = {}
        for task_id, names in self.files.items():
            if DONE_MARKER in names:
                out[task_id] = tuple(
                    sorted(n[: -len(OUTPUT_SUFFIX)] for n in names if n.endswith(OUTPUT_SUFFIX))
                )
        return out


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
) -> dict[str, tuple[str, ...]]:
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
    done: dict[str, tuple[str, ...]] = {}
    for part in parts:
        done.update(part)
    # a folder with only _done.json: outputs in packs, or none at all; the record says which
    unlisted = sorted(t for t, names in done.items() if not names)
    chunks = [unlisted[i : i + RECORDS_PER_READ] for i in range(0, len(unlisted), RECORDS_PER_READ)]
    for names in await asyncio.gather(*(_read_names(store, c, sem) for c in chunks)):
        for task_id, outputs in names.items():
            if outputs is None:
                del done[task_id]
            else:
                done[task_id] = outputs
    return done


async def _read_names(
    store: BlobStore, task_ids: list[str], sem: asyncio.Semaphore
) -> dict[str, tuple[str, ...] | None]:
    """Output names from each task's `_done.json`; None for a record that cannot be read."""
    async with sem:
        found = await store.get_batch([blob_keys.result_done(t) for t in task_ids])
    names: dict[str, tuple[str, ...] | None] = {}
    for task_id, data in zip(task_ids, found, strict=True):
        if data is None:  # gone since the listing
            log.warning("cache.record_unreadable", task_id=task_id, reason="missing")
            names[task_id] = None
            continue
        try:
            names[task_id] = tuple(sorted(decode_done(data).outputs))
        except msgspec.DecodeError as exc:
            log.warning("cache.record_unreadable", task_id=task_id, reason=str(exc))
            names[task_id] = None
    return names
