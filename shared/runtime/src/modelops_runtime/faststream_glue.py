"""faststream for the services that consume JetStream: the broker, the durable pull subscriber
and the NatsMessage seen as a consumer.Delivery.

With consumer_app (the services' wiring, built on this), the only runtime modules that import
faststream, so the rest of modelops_runtime (and the CLI) loads without it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from faststream import AckPolicy, FastStream
from faststream.nats import ConsumerConfig, JStream, NatsBroker, PullSub
from faststream.nats.annotations import NatsMessage
from faststream.nats.security import NatsCredentials, NatsSecurity, NatsUserPassword
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.client import JetStreamContext

from modelops_runtime.health import health_server_from_env, jetstream_ready_check, nats_ready_check
from modelops_runtime.service import NatsSettings, inbox_prefix

__all__ = [
    "NatsDelivery",
    "PullSettings",
    "make_broker",
    "pull_inbox",
    "pull_subscriber",
    "run_app",
    "with_nats_fetch_timeout",
]

log = structlog.get_logger(__name__)


def with_nats_fetch_timeout(fetch: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """`fetch`, raising nats.errors.TimeoutError where it raised a plain asyncio TimeoutError.

    nats-py's PullSubscription.fetch raises the plain one on one path (the lingering request
    whose deadline is already spent) and its own subclass elsewhere; faststream's pull loop
    only expects nats-py's, so under load an empty fetch made it log an error with a traceback
    and restart the loop. The subclass is still a TimeoutError for everyone else.
    """
    if getattr(fetch, "__modelops_wrapped__", False):
        return fetch

    @functools.wraps(fetch)
    async def fetch_with_nats_timeout(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fetch(*args, **kwargs)
        except NatsTimeoutError:
            raise
        except TimeoutError as exc:
            raise NatsTimeoutError() from exc

    fetch_with_nats_timeout.__modelops_wrapped__ = True  # type: ignore[attr-defined]
    return fetch_with_nats_timeout


JetStreamContext.PullSubscription.fetch = with_nats_fetch_timeout(  # type: ignore[method-assign]
    JetStreamContext.PullSubscription.fetch
)


class PullSettings(Protocol):
    """The consumer settings every service's Settings carries."""

    @property
    def ack_wait_s(self) -> float: ...
    @property
    def max_deliver(self) -> int: ...
    @property
    def max_ack_pending(self) -> int: ...


@dataclass
class NatsDelivery:
    """A faststream NatsMessage seen through consumer.Delivery."""

    msg: NatsMessage

    @property
    def data(self) -> bytes:
        return self.msg.raw_message.data

    @property
    def subject(self) -> str:
        return self.msg.raw_message.subject

    @property
    def headers(self) -> dict[str, str] | None:
        return self.msg.raw_message.headers

    @property
    def attempt(self) -> int:
        return self.msg.raw_message.metadata.num_delivered

    async def ack(self) -> None:
        await self.msg.ack()

    async def nack(self, delay: float | None = None) -> None:
        await self.msg.nack(delay=delay)

    async def reject(self) -> None:
        await self.msg.reject()


def _security(settings: NatsSettings) -> NatsSecurity | None:
    if settings.nats_creds:
        return NatsCredentials(settings.nats_creds)
    if settings.nats_user:
        return NatsUserPassword(settings.nats_user, settings.nats_password or "")
    return None


def make_broker(settings: NatsSettings, *, name: str) -> NatsBroker:
    """The faststream broker (its own connection, made when the app starts), logged in as the
    service's user and receiving inside its inbox."""
    return NatsBroker(
        settings.nats_url,
        name=f"{name}-consumer",
        security=_security(settings),
        inbox_prefix=inbox_prefix(settings),
        max_reconnect_attempts=-1,  # a service outlives NATS restarts
        logger=log,
        log_level=logging.DEBUG,  # per-message "Received/Processed": we log outcomes ourselves
    )


def pull_inbox(settings: NatsSettings) -> bytes:
    """Where pulled messages are delivered: inside the service user's inbox."""
    return f"{inbox_prefix(settings)}.".encode()


def pull_subscriber(
    broker: NatsBroker,
    subject: str,
    *,
    stream: str,
    durable: str,
    settings: PullSettings,
    inbox: bytes,
    batch_size: int,
    pull_timeout_s: float,
) -> Any:
    """The decorator subscribing a handler as a durable pull consumer of `stream` (declared by
    ensure_jetstream) with explicit, manual acks: consumer.consume settles each message."""
    return broker.subscriber(
        subject,
        stream=JStream(stream, declare=False),
        durable=durable,
        pull_sub=PullSub(batch_size=batch_size, timeout=pull_timeout_s),
        config=ConsumerConfig(
            ack_policy=JsAckPolicy.EXPLICIT,
            ack_wait=settings.ack_wait_s,
            max_deliver=settings.max_deliver,
            max_ack_pending=settings.max_ack_pending,
        ),
        ack_policy=AckPolicy.MANUAL,
        inbox_prefix=inbox,
    )


async def run_app(
    app: FastStream,
    *,
    service: str,
    nc: Any,
    js: Any,
    streams: Sequence[str],
    kv: Sequence[str],
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
    **started: Any,
) -> None:
    """Run `app` next to the service's health server until `stop` is set (forever if None).

    /readyz checks the connection `nc` and that `streams` and `kv` buckets exist. Logs
    `<service>.started` with `started` once subscribed, then sets `ready`; /readyz turns to
    draining before the app stops, so a load balancer stops sending first.
    """
    stop = stop or asyncio.Event()
    checks = {
        "nats": nats_ready_check(nc),
        "jetstream": jetstream_ready_check(js, streams=streams, kv=kv),
    }
    async with health_server_from_env(service=service, ready_checks=checks) as health, app:
        log.info(f"{service}.started", **started)
        if ready is not None:
            ready.set()
        await stop.wait()
        if health is not None:
            health.draining()
