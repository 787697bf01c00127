"""The registrar as a faststream app: a durable pull consumer of RegisterModel commands.

`create_app(deps)` wires the consumer; `serve(settings)` opens the deps and runs the app until
asked to stop, so the embedded stack can run it next to other services in one process and
`python -m modelops_registrar` can run it alone.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog
from faststream import AckPolicy, FastStream
from faststream.nats import ConsumerConfig, JStream, PullSub
from faststream.nats.annotations import NatsMessage
from nats.js.api import AckPolicy as JsAckPolicy

from modelops_contracts import Command, Event, RegisterModel
from modelops_contracts.subjects import COMMANDS_STREAM, EVENTS_STREAM, KV_MODELS, command_subject
from modelops_runtime.health import (
    health_server_from_env,
    jetstream_ready_check,
    nats_ready_check,
)

from .bootstrap import Deps, open_deps
from .consumer import Redelivery, consume
from .handlers import SOURCE, on_register_model
from .settings import Settings

__all__ = ["Settings", "create_app", "serve"]

log = structlog.get_logger(__name__)

# Registrations are small; a few at once keeps KV round trips overlapping without piling up
# compare-and-set conflicts on one project.
_BATCH = 8
# How long one pull waits for commands; bounds how long a stop waits for the pull to return.
_PULL_TIMEOUT_S = 1.0


@dataclass
class _Delivery:
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


def create_app(deps: Deps) -> FastStream:
    """The registrar app on `deps` (see bootstrap.open_deps)."""
    settings = deps.settings
    broker = deps.broker
    policy = Redelivery(max_deliver=settings.max_deliver, nak_delay_s=settings.nak_delay_s)

    async def handle(cmd: Command) -> list[Event]:
        assert isinstance(cmd, RegisterModel)  # consume() checked `accepts`
        return list(await on_register_model(cmd, store=deps.store, attempts=settings.kv_attempts))

    @broker.subscriber(
        command_subject(RegisterModel.kind),
        stream=JStream(COMMANDS_STREAM, declare=False),  # declared by ensure_jetstream
        durable=settings.durable,
        pull_sub=PullSub(batch_size=_BATCH, timeout=_PULL_TIMEOUT_S),
        config=ConsumerConfig(
            ack_policy=JsAckPolicy.EXPLICIT,
            ack_wait=settings.ack_wait_s,
            max_deliver=settings.max_deliver,
            max_ack_pending=settings.max_ack_pending,
        ),
        ack_policy=AckPolicy.MANUAL,
        inbox_prefix=deps.pull_inbox,
    )
    async def on_register_model_msg(msg: NatsMessage) -> None:
        await consume(
            _Delivery(msg),
            accepts=(RegisterModel,),
            handle=handle,
            publish=deps.publish,
            policy=policy,
            source=SOURCE,
        )

    return FastStream(broker, logger=None)


async def serve(
    settings: Settings | None = None,
    *,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Run the registrar until `stop` is set (forever if None); drain on the way out.

    `ready` is set once the streams exist and the consumer is subscribed.
    """
    settings = settings or Settings.from_env()
    stop = stop or asyncio.Event()
    async with open_deps(settings) as deps:
        app = create_app(deps)
        checks = {
            "nats": nats_ready_check(deps.nc),
            "jetstream": jetstream_ready_check(
                deps.js, streams=[COMMANDS_STREAM, EVENTS_STREAM], kv=[KV_MODELS]
            ),
        }
        async with health_server_from_env(service="registrar", ready_checks=checks) as health, app:
            log.info("registrar.started", nats_url=settings.nats_url, durable=settings.durable)
            if ready is not None:
                ready.set()
            await stop.wait()
            if health is not None:
                health.draining()
        log.info("registrar.stopped")
