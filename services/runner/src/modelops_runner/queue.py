"""The job's task queue: its durable JetStream pull consumer, behind a small interface.

The runner loop only sees `TaskQueue` and `QueueMessage`, so unit tests drive it with
in-memory fakes; `NatsTaskQueue` is the real one (nats-py directly rather than a faststream
subscriber: the loop sizes each fetch to its free workers, which faststream's batch pull
does not let it do, and FACTS.md records bugs in that path).

`NatsTaskQueue` speaks JetStream's pull protocol itself, on one inbox subscription whose
callback files each delivery (`_Deliveries`): a pull request asks for a batch, the server
sends the messages it has and then, if they were fewer, a status (404: no messages now;
408: the request expired). nats-py's `fetch` waited for each message with a task and a
timer of its own, ~30 us of the runner's CPU per task; here a fetch wakes once per batch.
As nats-py does, a fetch first asks without waiting (`no_wait`) and only when that brings
nothing asks again and waits, up to `timeout_s`, for the batch.

A deleted consumer means the job was cancelled: a pull request to it gets "no responders"
(503) and its info 404; both become `ConsumerGone`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import nats
import nats.errors
import nats.js.api
import nats.js.errors
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from .errors import ConsumerGone, InfrastructureError

__all__ = [
    "ConsumerLimits",
    "NatsTaskQueue",
    "QueueMessage",
    "QueueState",
    "TaskQueue",
]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ConsumerLimits:
    """The consumer settings the loop plans around."""

    ack_wait_s: float
    max_deliver: int  # -1: unlimited
    max_ack_pending: int


@dataclass(frozen=True)
class QueueState:
    """How much work is left on the consumer, for the drained check."""

    num_pending: int  # not delivered yet
    num_ack_pending: int  # delivered to someone and not acked (incl. awaiting redelivery)

    @property
    def drained(self) -> bool:
        return self.num_pending == 0 and self.num_ack_pending == 0


class QueueMessage(Protocol):
    """One delivered task message and its settlement (ack, nak, in_progress, term)."""

    @property
    def data(self) -> bytes: ...
    @property
    def headers(self) -> dict[str, str]: ...
    @property
    def attempt(self) -> int: ...  # 1 on first delivery
    @property
    def stream_seq(self) -> int: ...
    async def ack(self) -> None: ...
    async def nak(self, delay_s: float = 0.0) -> None: ...
    async def in_progress(self) -> None: ...  # never raises
    async def term(self) -> None: ...


class TaskQueue(Protocol):
    async def limits(self) -> ConsumerLimits: ...
    async def fetch(self, batch: int, timeout_s: float) -> list[QueueMessage]: ...
    async def state(self) -> QueueState: ...
    async def close(self) -> None: ...


class _NatsMessage:
    """A JetStream message; settling a message whose consumer is gone is not an error."""

    __slots__ = ("_msg",)

    def __init__(self, msg: Msg) -> None:
        self._msg = msg

    @property
    def data(self) -> bytes:
        return self._msg.data

    @property
    def headers(self) -> dict[str, str]:
        return self._msg.headers or {}

    @property
    def attempt(self) -> int:
        return self._msg.metadata.num_delivered

    @property
    def stream_seq(self) -> int:
        return self._msg.metadata.sequence.stream

    async def ack(self) -> None:
        try:
            await self._msg.ack()
        except nats.errors.Error as exc:
            raise InfrastructureError(f"cannot ack task message: {exc!r}") from exc

    async def nak(self, delay_s: float = 0.0) -> None:
        try:
            await self._msg.nak(delay=delay_s or None)
        except nats.errors.Error as exc:
            raise InfrastructureError(f"cannot nak task message: {exc!r}") from exc

    async def in_progress(self) -> None:
        """Never raises: a heartbeat lost to a disconnect only risks a redelivery."""
        try:
            await self._msg.in_progress()
        except nats.errors.Error as exc:
            log.debug("task.heartbeat_lost", error=repr(exc))

    async def term(self) -> None:
        try:
            await self._msg.term()
        except nats.errors.Error as exc:
            raise InfrastructureError(f"cannot terminate task message: {exc!r}") from exc


_NO_MESSAGES, _EXPIRED, _HEARTBEAT, _NO_RESPONDERS = "404", "408", "100", "503"


class _Deliveries:
    """What the consumer delivered to this runner's inbox and the fetch has not taken yet.

    The subscription's callback files each message; a waiting fetch is woken once when
    enough task messages are in, or when a status ends its pull request, not per message.
    """

    def __init__(self) -> None:
        self._items: deque[tuple[Msg, str | None]] = deque()
        self._ready = 0  # task messages (not statuses) in _items
        self._waiter: asyncio.Future[None] | None = None
        self._enough = 0
        self.status: tuple[str, str] | None = None  # the last status since clear_status()

    async def on_message(self, msg: Msg) -> None:
        status = JetStreamContext.is_status_msg(msg)
        if status == _HEARTBEAT:
            return  # idle heartbeats and flow control are not asked for
        self._items.append((msg, status))
        if status:
            self.status = (status, (msg.headers or {}).get("Description", ""))
        else:
            self._ready += 1
        waiter = self._waiter
        if waiter is not None and not waiter.done() and (status or self._ready >= self._enough):
            waiter.set_result(None)

    def clear_status(self) -> None:
        self.status = None

    def take(self, n: int) -> list[Msg]:
        """Up to `n` task messages, oldest first; statuses met on the way are dropped (each
        ended a pull request, which `status` has already reported)."""
        taken: list[Msg] = []
        while self._items and len(taken) < n:
            msg, status = self._items.popleft()
            if status is None:
                self._ready -= 1
                taken.append(msg)
        while self._items and self._items[0][1] is not None:
            self._items.popleft()  # a status right behind the last message ends its request
        return taken

    async def wait(self, n: int, deadline: float) -> None:
        """Until `n` task messages wait, a status arrived since clear_status(), or `deadline`
        (loop time)."""
        if self._ready >= n or self.status is not None:
            return
        self._enough = n
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except TimeoutError:
            pass
        finally:
            self._waiter = None


class NatsTaskQueue:
    """Pull from durable `consumer` on `stream` (created by the submitter, never by us)."""

    def __init__(
        self,
        nc: nats.NATS,
        js: JetStreamContext,
        sub: nats.aio.subscription.Subscription,
        deliveries: _Deliveries,
        *,
        stream: str,
        consumer: str,
        inbox: str,
    ) -> None:
        self._nc = nc
        self._js = js
        self._sub = sub
        self._deliveries = deliveries
        self._stream = stream
        self._consumer = consumer
        self._inbox = inbox
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self.name = f"{stream}/{consumer}"

    @classmethod
    async def bind(cls, nc: nats.NATS, *, stream: str, consumer: str) -> NatsTaskQueue:
        deliveries = _Deliveries()
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox, cb=deliveries.on_message)
        return cls(
            nc,
            nc.jetstream(),
            sub,
            deliveries,
            stream=stream,
            consumer=consumer,
            inbox=inbox,
        )

    async def _info(self) -> nats.js.api.ConsumerInfo:
        try:
            return await self._js.consumer_info(self._stream, self._consumer)
        except nats.js.errors.NotFoundError as exc:
            raise ConsumerGone(
                f"consumer {self.name} does not exist: the job was cancelled or is finished"
            ) from exc
        except (nats.errors.Error, TimeoutError) as exc:
            raise InfrastructureError(
                f"cannot read consumer {self.name}: {type(exc).__name__}: {exc}"
            ) from exc

    async def limits(self) -> ConsumerLimits:
        cfg = (await self._info()).config
        return ConsumerLimits(
            ack_wait_s=float(cfg.ack_wait or 30.0),
            max_deliver=int(cfg.max_deliver or -1),
            max_ack_pending=int(cfg.max_ack_pending or 1000),
        )

    async def state(self) -> QueueState:
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await self._nc.flush(timeout=2)  # our acks reach the server before we ask
        info = await self._info()
        return QueueState(num_pending=info.num_pending, num_ack_pending=info.num_ack_pending)

    async def fetch(self, batch: int, timeout_s: float) -> list[QueueMessage]:
        """Up to `batch` messages; [] when none came within `timeout_s`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        msgs = self._deliveries.take(batch)  # delivered after an earlier fetch had returned
        if len(msgs) < batch:  # what the consumer has now
            # (a request with `expires` ends on the server when this fetch gives up; one
            # without it is not held once it has had what the consumer had: as nats-py)
            expires = None if msgs else deadline - loop.time()
            msgs += await self._pull(batch - len(msgs), deadline, no_wait=True, expires_s=expires)
        if not msgs and deadline - loop.time() > 0.01:  # nothing now: wait for the batch
            msgs = await self._pull(batch, deadline, expires_s=deadline - loop.time())
        return [_NatsMessage(m) for m in msgs]

    async def _pull(
        self, n: int, deadline: float, *, no_wait: bool = False, expires_s: float | None
    ) -> list[Msg]:
        """One pull request for `n` messages; `no_wait`: the server answers at once with 404
        when it has none; `expires_s`: it ends the request (408) that much later."""
        request: dict[str, object] = {"batch": n}
        if no_wait:
            request["no_wait"] = True
        if expires_s is not None:
            request["expires"] = max(1, int(expires_s * 1e9) - 100_000)  # ns: ends first
        self._deliveries.clear_status()
        try:
            await self._nc.publish(self._next_subject, json.dumps(request).encode(), self._inbox)
        except nats.errors.Error as exc:  # disconnected, closed: the client is reconnecting
            raise InfrastructureError(f"fetch from {self.name} failed: {exc!r}") from exc
        await self._deliveries.wait(n, deadline)
        msgs = self._deliveries.take(n)
        status = self._deliveries.status
        if msgs or status is None or status[0] in (_NO_MESSAGES, _EXPIRED):
            return msgs
        await self._info()  # raises ConsumerGone if it was deleted
        code, description = status
        if code == _NO_RESPONDERS:
            raise InfrastructureError(f"JetStream refused a fetch from {self.name}")
        # 409 and the like (too many pulls waiting, max_ack_pending reached by the job's
        # runners): nothing to take now; wait out the fetch, as if it had timed out, rather
        # than asking again at once
        log.debug("runner.fetch_refused", status=code, description=description)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                await asyncio.Event().wait()
        return []

    async def close(self) -> None:
        with contextlib.suppress(nats.errors.Error, ValueError):
            await self._sub.unsubscribe()
