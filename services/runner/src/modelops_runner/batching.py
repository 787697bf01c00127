"""Gather concurrent calls into batches: one flush (one store round trip) serves many tasks.

Each task coroutine awaits `Batcher.submit(item)` as if it were a single call. Items submitted
while no flush runs go out together in the next loop iteration; items submitted while a flush
runs wait for it and go out in the one after. Batches therefore grow with the load by
themselves, and at most one flush is in flight.

`window_s` lets a batch wait that long after its first item for company (or until
`window_items` wait): tasks of ~20 ms finish one every few ms, and waiting for the next ones
costs them nothing (nobody waits on a finished task but its ack) while it divides the
per-batch costs (thread hop, disk sync, socket writes) among several tasks. `company` says
whether any is coming: when it answers False (nothing else is running), the batch goes at
once, and so it does after `hurry()`. A flush takes every waiting item (up to `max_batch`),
so a slow disk makes batches grow, not wait.

`flush` answers each item with its result or with the exception for that item alone; if it
raises, every item of that batch gets that exception.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["Batcher", "BatcherClosed", "Flush"]

In = TypeVar("In")
Out = TypeVar("Out")

Flush = Callable[[list[In]], Awaitable[Sequence[Out | BaseException]]]
"""Handles one batch; returns one result (or exception) per item, in order."""


class BatcherClosed(RuntimeError):
    """submit() after close(), or close() while the item was waiting: nothing was done with it."""


class Batcher(Generic[In, Out]):
    """Runs `flush` over the items submitted meanwhile, `max_batch` at most per call."""

    def __init__(
        self,
        flush: Flush[In, Out],
        *,
        name: str,
        max_batch: int = 256,
        window_s: float = 0.0,
        window_items: int = 0,
        company: Callable[[], bool] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.name = name
        self.window_s = window_s
        self._enough = min(max_batch, window_items or max_batch)
        self.batches = 0  # flushes so far, and items through them: the mean batch size
        self.items = 0
        self._flush = flush
        self._company = company
        self._max_batch = max_batch
        self._pending: list[tuple[In, asyncio.Future[Out]]] = []
        self._runner: asyncio.Task[None] | None = None
        self._full = asyncio.Event()
        self._closed = False

    async def submit(self, item: In) -> Out:
        """The flush's result for `item`; raises the exception the flush gave for it."""
        if self._closed:
            raise BatcherClosed(f"batcher {self.name} is closed")
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if len(self._pending) >= self._enough or not self._company_coming():
            self._full.set()
        if self._runner is None:
            # a task, not a call: the other coroutines started in this loop iteration get to
            # submit before it takes the batch
            self._runner = asyncio.create_task(self._run(), name=f"batcher-{self.name}")
        return await future

    def hurry(self) -> None:
        """End the open window: what waits goes out now."""
        if self._pending:
            self._full.set()

    def _company_coming(self) -> bool:
        return self._company is None or self._company()

    async def close(self) -> None:
        """Stop: a flush in progress is cancelled, and waiting submitters get BatcherClosed."""
        self._closed = True
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        self._fail_pending(self._pending)
        self._pending = []

    async def _run(self) -> None:
        try:
            while self._pending:
                if (
                    self.window_s > 0
                    and len(self._pending) < self._enough
                    and self._company_coming()
                ):
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.window_s):
                            await self._full.wait()
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                if len(self._pending) < self._enough:
                    self._full.clear()
                await self._flush_one(batch)
        finally:
            if self._runner is asyncio.current_task():
                self._runner = None

    async def _flush_one(self, batch: list[tuple[In, asyncio.Future[Out]]]) -> None:
        live = [(item, fut) for item, fut in batch if not fut.done()]  # cancelled: skip
        if not live:
            return
        self.batches += 1
        self.items += len(live)
        try:
            results = await self._flush([item for item, _ in live])
        except asyncio.CancelledError:
            self._fail_pending(live)
            raise
        except Exception as exc:  # handed to every waiter of this batch: none is lost
            results = [exc] * len(live)
        if len(results) != len(live):
            error = RuntimeError(
                f"batcher {self.name}: flush answered {len(results)} of {len(live)} items"
            )
            results = [error] * len(live)
        for (_, future), result in zip(live, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    def _fail_pending(self, waiting: list[tuple[In, asyncio.Future[Out]]]) -> None:
        for _, future in waiting:
            if not future.done():
                future.set_exception(BatcherClosed(f"batcher {self.name} was closed"))
