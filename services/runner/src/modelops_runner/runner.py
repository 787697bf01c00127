"""The runner loop: keep the worker pool fed with a job's tasks until there are none left.

One fetch loop asks for as many tasks as there are free workers, plus about `look_ahead_s`
of work ahead when tasks are short (so no worker waits for a fetch round trip, and short
tasks come in batches); every fetched message gets its own coroutine (handling.py), so
storing results and waiting for PubAcks overlap across tasks. A heartbeat loop sends
`in_progress` for messages held longer than a third of ack_wait.

The loop ends when a fetch comes back empty, nothing is held here, the consumer has nothing
pending or awaiting ack (survivors wait for a crashed runner's tasks to be redelivered), and
the submitter has said every task is queued (`drained`; runners start while it still
enqueues, see JobSpec.enqueued_marker); when the consumer is deleted (`cancelled`: running
tasks are stopped); or after `stop()` (SIGTERM: queued messages are nak'ed at once, running
tasks get `shutdown_grace_s` to finish, then they are interrupted and nak'ed).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Literal

import structlog

from modelops_runtime.blobstore import BlobStore, BlobStoreError

from .errors import ConsumerGone, EnqueueStalled, InfrastructureError
from .handling import (
    CORRELATION_HEADER,
    HeldMessage,
    LoopConfig,
    Pool,
    RunStats,
    Stage,
    TaskHandler,
)
from .pacing import fetch_size, look_ahead
from .queue import QueueMessage, TaskQueue
from .reporting import EventPublisher

__all__ = ["CORRELATION_HEADER", "LoopConfig", "Pool", "RunOutcome", "RunStats", "Runner"]

log = structlog.get_logger(__name__)

RunOutcome = Literal["drained", "cancelled", "stopped"]

_OUTAGE_LIMIT_S = 120.0  # NATS unreachable this long while fetching: give up (exit 1)


class Runner:
    """Runs one job's tasks until the queue is drained, the job is cancelled, or stop()."""

    def __init__(
        self,
        cfg: LoopConfig,
        *,
        queue: TaskQueue,
        pool: Pool,
        store: BlobStore,
        publisher: EventPublisher,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.stats = RunStats()
        self._queue = queue
        self._clock = clock
        self._handler = TaskHandler(
            cfg,
            pool=pool,
            store=store,
            publisher=publisher,
            stats=self.stats,
            on_stage=self._set_stage,
            in_flight=lambda: self._occupying,
            clock=clock,
        )
        self._store = store
        self._enqueued = not cfg.enqueued_marker  # no marker to wait for: everything is queued
        self._empty_since: float | None = None
        self._held: dict[int, HeldMessage] = {}
        self._occupying = 0
        self._room = asyncio.Event()
        self._stopping = asyncio.Event()

    # public
    def stop(self) -> None:
        """Stop fetching; queued messages are nak'ed, running tasks get the grace period."""
        if not self._stopping.is_set():
            log.info("runner.stopping", held=len(self._held), grace_s=self.cfg.shutdown_grace_s)
        self._stopping.set()
        self._room.set()
        self._handler.hurry_saves()

    async def run(self) -> RunOutcome:
        """Run tasks until drained, cancelled or stopped; InfrastructureError if NATS is lost."""
        beats = asyncio.create_task(self._heartbeats())
        outcome: RunOutcome = "stopped"
        try:
            outcome = await self._fetch_loop()
        except ConsumerGone as exc:
            log.info("runner.job_cancelled", reason=str(exc))
            outcome = "cancelled"
        finally:
            if outcome == "cancelled":
                self._handler.consumer_gone = True
            await self._settle_held(graceful=outcome != "cancelled")
            await self._handler.close()
            beats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beats
        return outcome

    # fetching
    def _want(self) -> int:
        n, limit = self.cfg.n_workers, self.cfg.held_limit
        if len(self._held) >= limit:  # finished tasks waiting to be stored fill the room
            self._handler.hurry_saves()
        ahead = look_ahead(
            self._handler.task_s, n_workers=n, window_s=self.cfg.look_ahead_s, limit=limit - n
        )
        return fetch_size(
            n_workers=n,
            occupying=self._occupying,
            held=len(self._held),
            max_held=limit,
            ahead=ahead,
        )

    async def _fetch_loop(self) -> RunOutcome:
        outage_since: float | None = None
        while not self._stopping.is_set():
            want = self._want()
            if want == 0:
                await self._wait_for_room()
                continue
            try:
                msgs = await self._queue.fetch(want, self.cfg.fetch_timeout_s)
                if not msgs:
                    state = await self._queue.state()
                    if not self._held and state.drained and await self._all_queued():
                        return "drained"
            except InfrastructureError as exc:
                now = self._clock()
                outage_since = outage_since or now
                if now - outage_since > _OUTAGE_LIMIT_S:
                    raise
                log.warning("runner.fetch_failed", error=str(exc), retry_in_s=1.0)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):  # back off, but wake at once on stop()
                        await self._stopping.wait()
                continue
            outage_since = None
            if msgs:
                self._empty_since = None  # tasks still come: the wait for the marker restarts
            for msg in msgs:
                self._start(msg)
        return "stopped"

    async def _all_queued(self) -> bool:
        """Whether the submitter has queued every task (its marker exists), so that an empty
        queue means done. EnqueueStalled after `enqueue_wait_s` of empty queue without it."""
        if self._enqueued:
            return True
        try:
            self._enqueued = await self._store.exists(self.cfg.enqueued_marker)
        except BlobStoreError as exc:
            log.warning("runner.enqueue_marker_unreadable", error=str(exc))
        if self._enqueued:
            log.debug("runner.all_tasks_queued")
            return True
        now = self._clock()
        if self._empty_since is None:
            self._empty_since = now
            log.info("runner.waiting_for_enqueue", marker=self.cfg.enqueued_marker)
        elif now - self._empty_since > self.cfg.enqueue_wait_s:
            raise EnqueueStalled(
                f"the queue stayed empty for {self.cfg.enqueue_wait_s:g} s and the submitter "
                f"has not marked the job fully queued ({self.cfg.enqueued_marker})",
                hint="check the submitter's log; it relaunches runners when it finishes",
            )
        return False

    async def _wait_for_room(self) -> None:
        """Wait for a free worker; meanwhile check now and then that the job still exists."""
        self._room.clear()
        try:
            async with asyncio.timeout(5 * self.cfg.fetch_timeout_s):
                await self._room.wait()
        except TimeoutError:
            with contextlib.suppress(InfrastructureError):  # ConsumerGone propagates
                await self._queue.state()

    def _start(self, msg: QueueMessage) -> None:
        if msg.attempt > 1:
            self.stats.redelivered += 1
        now = self._clock()
        held = HeldMessage(msg=msg, since=now, last_beat=now)
        self._held[id(held)] = held
        self._occupying += 1
        held.task = asyncio.create_task(self._handle(held))

    async def _handle(self, held: HeldMessage) -> None:
        try:
            await self._handler.handle(held)
        finally:
            self._release(held)

    def _set_stage(self, held: HeldMessage, stage: Stage) -> None:
        was = held.stage in ("queued", "running")
        held.stage = stage
        if was and stage == "finishing":
            self._occupying -= 1
            self._wake_fetcher()

    def _release(self, held: HeldMessage) -> None:
        self._set_stage(held, "finishing")
        self._held.pop(id(held), None)
        self._wake_fetcher()

    def _wake_fetcher(self) -> None:
        """Wake the fetch loop when it has work: a fetch is due, or nothing is held (drained?).

        Waking it on every finished task instead costs a loop turn per task for nothing.
        """
        if not self._held or self._want() > 0:
            self._room.set()

    async def _heartbeats(self) -> None:
        """in_progress for messages held over a third of ack_wait, so they are not redelivered."""
        every = max(0.05, self.cfg.ack_wait_s / 3)
        while True:
            await asyncio.sleep(every)
            now = self._clock()
            for held in list(self._held.values()):
                if now - held.last_beat >= every:
                    held.last_beat = now
                    await held.msg.in_progress()  # never raises: a lost beat risks a redelivery

    async def _settle_held(self, *, graceful: bool) -> None:
        """On the way out: give running tasks the grace period, cancel (and nak) the rest."""
        tasks = [h.task for h in self._held.values() if h.task is not None]
        if not tasks:
            return
        if graceful:
            for held in self._held.values():
                if held.stage == "queued" and held.task is not None:
                    held.task.cancel()
            _, late = await asyncio.wait(tasks, timeout=self.cfg.shutdown_grace_s)
            for task in late:
                task.cancel()
        else:
            for task in tasks:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
