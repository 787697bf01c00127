"""Which tasks already have a stored result: those are not enqueued again.

A task is done when `results/<xx>/<task_id>/_done.json` exists (runners write it last). For a
large job, one listing of each shard prefix `results/<xx>/` (256 of them, 1000 keys a page)
costs far fewer requests than a HEAD per task; for a handful of tasks, or a shard crowded with
other jobs' results, listing each task's own prefix is cheaper. Each shard starts with the
shard listing when it has enough wanted tasks, and gives up on it once it has read more keys
than the per-task listings would cost, so the cost is never much worse than the cheaper way.
Listing also yields the output names each cached task stored, which the results table needs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

import structlog

from modelops_contracts import blob_keys
from modelops_runtime.blobstore import BlobStore

__all__ = ["DONE_MARKER", "find_done", "parse_result_key"]

log = structlog.get_logger(__name__)

DONE_MARKER = "_done.json"
OUTPUT_SUFFIX = ".parquet"
PAGE = 1000  # keys per listing request (S3's page size)


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
    return done
