"""Batcher: concurrent submits share flushes, errors reach exactly the items they concern, and
batched result storage keeps each task's outcome its own."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest

from modelops_contracts.jobs import blob_keys
from modelops_runner.batching import Batcher, BatcherClosed
from modelops_runner.results import (
    BadOutputName,
    ResultRecord,
    Saved,
    find_results,
    save_results,
)
from modelops_runtime.blobstore import BlobConflict, BlobLocation, FileBlobStore, open_blob_store


class Recorder:
    """A flush that records its batches; it can be held open to let the next batch form."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()

    async def __call__(self, items: list[int]) -> Sequence[int | BaseException]:
        self.batches.append(list(items))
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]


async def test_submits_of_one_loop_iteration_share_one_flush() -> None:
    flush = Recorder()
    batcher = Batcher(flush, name="t")
    results = await asyncio.gather(
        *(batcher.submit(i) for i in (0, 2, 4, 6)), return_exceptions=True
    )
    assert results == [0, 20, 40, 60]
    assert flush.batches == [[0, 2, 4, 6]]
    assert (batcher.batches, batcher.items) == (1, 4)


async def test_items_submitted_during_a_flush_go_out_together_in_the_next() -> None:
    flush = Recorder()
    flush.gate = asyncio.Event()
    batcher = Batcher(flush, name="t")
    first = asyncio.ensure_future(batcher.submit(0))
    await flush.started.wait()  # the first flush has started and is held open
    later = [asyncio.ensure_future(batcher.submit(i)) for i in (2, 4, 6)]
    await asyncio.sleep(0)
    assert flush.batches == [[0]]  # the late ones wait for the flush in flight
    flush.gate.set()
    assert await first == 0 and await asyncio.gather(*later) == [20, 40, 60]
    assert flush.batches == [[0], [2, 4, 6]]


async def test_a_window_waits_for_company_until_enough_items_wait() -> None:
    flush = Recorder()
    batcher = Batcher(flush, name="t", window_s=60.0, window_items=3)
    first = asyncio.ensure_future(batcher.submit(0))
    for _ in range(5):
        await asyncio.sleep(0)
    assert flush.batches == []  # the window is open: the lone item waits for company
    rest = [asyncio.ensure_future(batcher.submit(i)) for i in (2, 4, 6)]
    assert await first == 0 and await asyncio.gather(*rest) == [20, 40, 60]
    assert flush.batches == [[0, 2, 4, 6]]  # the flush takes every waiting item


async def test_a_window_does_not_wait_when_no_company_is_coming() -> None:
    flush = Recorder()
    running = [True]
    batcher = Batcher(flush, name="t", window_s=60.0, window_items=10, company=lambda: running[0])
    first = asyncio.ensure_future(batcher.submit(0))
    for _ in range(5):
        await asyncio.sleep(0)
    assert flush.batches == []  # others may still finish: wait for them
    running[0] = False  # the last one finishes: nothing more can join
    async with asyncio.timeout(5):
        assert await asyncio.gather(first, batcher.submit(2)) == [0, 20]
    assert flush.batches == [[0, 2]]
    async with asyncio.timeout(5):  # and a lone item goes out at once
        assert await batcher.submit(4) == 40
    assert flush.batches == [[0, 2], [4]]


async def test_hurry_ends_an_open_window() -> None:
    flush = Recorder()
    batcher = Batcher(flush, name="t", window_s=60.0, window_items=10, company=lambda: True)
    batcher.hurry()  # nothing waits: a no-op, the next window still waits
    waiting = [asyncio.ensure_future(batcher.submit(i)) for i in (0, 2)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert flush.batches == []
    batcher.hurry()
    async with asyncio.timeout(5):
        assert await asyncio.gather(*waiting) == [0, 20]
    assert flush.batches == [[0, 2]]


async def test_an_item_error_reaches_only_its_submitter() -> None:
    batcher = Batcher(Recorder(), name="t")
    results = await asyncio.gather(*(batcher.submit(i) for i in (1, 2, 3)), return_exceptions=True)
    assert isinstance(results[0], ValueError) and str(results[0]) == "odd 1"
    assert results[1] == 20 and isinstance(results[2], ValueError)


async def test_a_failing_flush_fails_its_batch_and_the_next_batch_still_runs() -> None:
    calls = 0

    async def flaky(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("disk on fire")
        return items

    batcher = Batcher(flaky, name="t")
    failed = await asyncio.gather(*(batcher.submit(i) for i in (1, 2)), return_exceptions=True)
    assert all(isinstance(r, OSError) for r in failed)
    assert await batcher.submit(3) == 3


async def test_max_batch_splits_a_crowd() -> None:
    flush = Recorder()
    batcher = Batcher(flush, name="t", max_batch=3)
    await asyncio.gather(*(batcher.submit(i) for i in range(0, 14, 2)))
    assert [len(b) for b in flush.batches] == [3, 3, 1]


async def test_a_flush_answering_the_wrong_number_of_items_fails_them_all() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:1]

    batcher = Batcher(short, name="short")
    results = await asyncio.gather(*(batcher.submit(i) for i in (1, 2)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) and "1 of 2" in str(r) for r in results)


async def test_a_cancelled_submit_is_left_out_of_its_batch() -> None:
    flush = Recorder()
    batcher = Batcher(flush, name="t")
    gone = asyncio.ensure_future(batcher.submit(2))
    kept = asyncio.ensure_future(batcher.submit(4))
    await asyncio.sleep(0)  # both submitted; the flush task is scheduled after them
    gone.cancel()
    assert await kept == 40
    assert flush.batches == [[4]]


async def test_close_fails_waiting_submitters_and_refuses_new_ones() -> None:
    flush = Recorder()
    flush.gate = asyncio.Event()
    batcher = Batcher(flush, name="t")
    waiting = asyncio.ensure_future(batcher.submit(0))
    await flush.started.wait()
    await batcher.close()
    with pytest.raises(BatcherClosed):
        await waiting
    with pytest.raises(BatcherClosed, match="batcher t is closed"):
        await batcher.submit(2)


# ----------------------------------------------------------------------- batched result storage


def _record(task_id: str) -> ResultRecord:
    return ResultRecord(task_id=task_id, job_id="job-1", attempt=1, outputs={})


async def test_save_results_keeps_each_tasks_outcome_its_own(tmp_path: Path) -> None:
    store = open_blob_store(f"file://{tmp_path}")
    assert isinstance(store, FileBlobStore)
    good, clash, bad_name, already = ("a" * 62 + f"{i:02d}" for i in range(4))
    # an object where `clash`'s result folder must go: its outputs cannot be stored
    await store.put_bytes(blob_keys.result_prefix(clash), b"in the way")
    (first,) = await save_results(store, [(_record(already), {"summary": b"s0"})])
    assert isinstance(first, Saved) and first.wrote

    answers = await save_results(
        store,
        [
            (_record(good), {"summary": b"s1", "series": b"t1"}),
            (_record(clash), {"summary": b"s2"}),
            (_record(bad_name), {"../up": b"s3"}),
            (msgspec.structs.replace(_record(already), job_id="job-2"), {"summary": b"s0"}),
        ],
    )

    saved, conflict, refused, reused = answers
    assert isinstance(saved, Saved) and saved.wrote
    assert set(saved.record.outputs) == {"summary", "series"}
    assert isinstance(conflict, BlobConflict)
    assert isinstance(refused, BadOutputName)
    assert isinstance(reused, Saved) and not reused.wrote and reused.record == first.record
    found = await find_results(store, [good, clash, bad_name, already])
    assert found == [saved.record, None, None, first.record]


class UnlinkedStore(FileBlobStore):
    """A file:// store that says it cannot link shared puts, as S3 cannot."""

    links_shared_puts = False


@pytest.mark.parametrize("links", [True, False])
async def test_the_records_of_a_stored_batch_are_one_record_set_where_the_store_links(
    tmp_path: Path, links: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("modelops_runner.results.RECORDS_PER_SET", 3)
    location = BlobLocation(scheme="file", root=str(tmp_path))
    store = FileBlobStore(location) if links else UnlinkedStore(location)
    ids = ["b" * 62 + f"{i:02d}" for i in range(5)]
    answers = await save_results(store, [(_record(t), {"summary": b"s" + t.encode()}) for t in ids])
    assert all(isinstance(a, Saved) and a.wrote for a in answers)

    found = await find_results(store, ids)
    assert found == [a.record for a in answers if isinstance(a, Saved)]
    records = [tmp_path / blob_keys.result_done(t) for t in ids]
    inodes = [path.stat().st_ino for path in records]
    if links:  # sets of at most 3 records: the first three share a file, the last two another
        assert len(set(inodes[:3])) == 1 and len(set(inodes[3:])) == 1 and inodes[0] != inodes[3]
        assert len(msgspec.json.decode(records[4].read_bytes())) == 2
    else:  # each task's key holds its own record
        assert len(set(inodes)) == 5
        assert msgspec.json.decode(records[4].read_bytes())["task_id"] == ids[4]
