"""The job's task queue: its durable JetStream pull consumer, behind a small interface.

The runner loop only sees `TaskQueue` and `QueueMessage`, so unit tests drive it with
in-memory fakes; `NatsTaskQueue` is the real one (nats-py directly rather than a faststream
subscriber: the loop sizes each fetch to its free workers, which faststream's batch pull
does not let it do, and FACTS.md records bugs in that path).

`NatsTaskQueue` speaks JetStream's pull protocol itself, on one inbox subscription whose
callback files each delivery (`_Deliveries`): a pull request asks for a batch, the server
sends the messages it has and then, if they were fewer, a status (404: no messages now;
408: the request expired). Each request replies to a subject of its own under the inbox, so
a status is matched to its request (an expired request's 408 can arrive after its fetch has
given up, and must not end the next one). nats-py's `fetch` waited for each message with a
task and a timer of its own, ~30 us of the runner's CPU per task; here a fetch wakes once per
batch.
As nats-py does, a fetch first asks without waiting (`no_wait`) and only when that brings
nothing asks again and waits, up to `timeout_s`, for the batch. Every request carries
`expires`, so none outlives its fetch on the server; what still arrives late (a status, a
message sent as the request ended) is taken by the next fetch.

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

    def __init__(self, inbox: str) -> None:
        self.inbox = inbox  # requests reply to <inbox>.<request number>
        self._request = 0
        self._items: deque[Msg] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._enough = 0
        self.status: tuple[str, str] | None = None  # what ended the current request

    def next_request(self) -> str:
        """The reply subject of a new pull request; a status for any earlier one (its 408
        can arrive after its fetch gave up) is ignored from now on."""
        self._request += 1
        self.status = None
        return f"{self.inbox}.{self._request}"

    async def on_message(self, msg: Msg) -> None:
        status = JetStreamContext.is_status_msg(msg)
        if status:
            if status == _HEARTBEAT or msg.subject != f"{self.inbox}.{self._request}":
                return  # not asked for (heartbeats, flow control), or an earlier request's
            self.status = (status, (msg.headers or {}).get("Description", ""))
        else:
            self._items.append(msg)  # a delivery is a delivery, whichever request it answers
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if status or len(self._items) >= self._enough:
                waiter.set_result(None)

    def take(self, n: int) -> list[Msg]:
        """Up to `n` delivered task messages, oldest first."""
        return [self._items.popleft() for _ in range(min(n, len(self._items)))]

    async def wait(self, n: int, deadline: float) -> None:
        """Until `n` task messages wait, the current request's status came, or `deadline`
        (loop time)."""
        if len(self._items) >= n or self.status is not None:
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
    ) -> None:
        self._nc = nc
        self._js = js
        self._sub = sub
        self._deliveries = deliveries
        self._stream = stream
        self._consumer = consumer
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self.name = f"{stream}/{consumer}"

    @classmethod
    async def bind(cls, nc: nats.NATS, *, stream: str, consumer: str) -> NatsTaskQueue:
        deliveries = _Deliveries(nc.new_inbox())
        sub = await nc.subscribe(f"{deliveries.inbox}.*", cb=deliveries.on_message)
        return cls(nc, nc.jetstream(), sub, deliveries, stream=stream, consumer=consumer)

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
        msgs = self._deliveries.take(batch)
        if msgs:  # delivered for an earlier request after its fetch had returned: these first
            return [_NatsMessage(m) for m in msgs]
        msgs = await self._pull(batch, deadline, no_wait=True)  # what the consumer has now
        if not msgs and deadline - loop.time() > 0.01:  # nothing now: wait for the batch
            msgs = await self._pull(batch, deadline)
        return [_NatsMessage(m) for m in msgs]

    async def _pull(self, n: int, deadline: float, *, no_wait: bool = False) -> list[Msg]:
        """One pull request for `n` messages, ended by the server (408) by `deadline`, so none
        outlives its fetch; `no_wait`: ended (404) once the consumer has no more to give."""
        expires_s = deadline - asyncio.get_running_loop().time()
        request: dict[str, object] = {"batch": n, "expires": max(1, int(expires_s * 1e9) - 100_000)}
        if no_wait:
            request["no_wait"] = True
        reply = self._deliveries.next_request()
        try:
            await self._nc.publish(self._next_subject, json.dumps(request).encode(), reply)
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
