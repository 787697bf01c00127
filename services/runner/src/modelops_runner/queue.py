"""The job's task queue: its durable JetStream pull consumer, behind a small interface.

The runner loop only sees `TaskQueue` and `QueueMessage`, so unit tests drive it with
in-memory fakes; `NatsTaskQueue` is the real one (nats-py directly rather than a faststream
subscriber: the loop sizes each fetch to its free workers, which faststream's batch pull
does not let it do, and FACTS.md records bugs in that path).

A deleted consumer means the job was cancelled: fetching from it fails with "no responders"
and its info with 404; both become `ConsumerGone`.
"""

from __future__ import annotations

import contextlib
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


class NatsTaskQueue:
    """Pull from durable `consumer` on `stream` (created by the submitter, never by us)."""

    def __init__(
        self, nc: nats.NATS, psub: JetStreamContext.PullSubscription, *, name: str
    ) -> None:
        self._nc = nc
        self._psub = psub
        self.name = name

    @classmethod
    async def bind(cls, nc: nats.NATS, *, stream: str, consumer: str) -> NatsTaskQueue:
        js = nc.jetstream()
        psub = await js.pull_subscribe_bind(durable=consumer, stream=stream)
        return cls(nc, psub, name=f"{stream}/{consumer}")

    async def _info(self) -> nats.js.api.ConsumerInfo:
        try:
            return await self._psub.consumer_info()
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
        try:
            msgs = await self._psub.fetch(batch, timeout=timeout_s)
        except TimeoutError:  # nats.errors.TimeoutError derives from it
            return []
        except (nats.js.errors.ServiceUnavailableError, nats.errors.NoRespondersError) as exc:
            await self._info()  # raises ConsumerGone if it was deleted
            raise InfrastructureError(f"JetStream refused a fetch from {self.name}") from exc
        except nats.js.errors.APIError as exc:
            await self._info()
            raise InfrastructureError(
                f"fetch from {self.name} failed: {exc.description or exc}"
            ) from exc
        except nats.errors.Error as exc:  # disconnected, closed: the client is reconnecting
            raise InfrastructureError(f"fetch from {self.name} failed: {exc!r}") from exc
        return [_NatsMessage(m) for m in msgs]

    async def close(self) -> None:
        with contextlib.suppress(nats.errors.Error, ValueError):
            await self._psub.unsubscribe()
