"""The bundler as a faststream app: a durable pull consumer of BuildBundle commands and, when
set to build on register, of ModelRegistered events.

`create_app(deps)` wires the consumers; `serve(settings)` opens the deps and runs the app until
asked to stop, so the embedded stack can run it next to other services in one process and
`python -m modelops_bundler` can run it alone.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog
from faststream import AckPolicy, FastStream
from faststream.nats import ConsumerConfig, JStream, PullSub
from faststream.nats.annotations import NatsMessage
from nats.js.api import AckPolicy as JsAckPolicy

from modelops_contracts import BuildBundle, BundleFailed, Command, Event, ModelRegistered
from modelops_contracts.subjects import (
    COMMANDS_STREAM,
    EVENTS_STREAM,
    KV_BUNDLES,
    KV_MODELS,
    MODEL_EVENTS,
    command_subject,
)
from modelops_runtime.health import (
    health_server_from_env,
    jetstream_ready_check,
    nats_ready_check,
)

from .bootstrap import Deps, open_deps
from .consumer import Redelivery, consume, consume_event
from .errors import Rejected
from .handlers import SOURCE, build_for_registration, on_build_bundle
from .settings import Settings

__all__ = ["Settings", "create_app", "serve"]

log = structlog.get_logger(__name__)

# Builds mostly wait on the store; a few at once overlap that without flooding it.
_BATCH = 4
# How long one pull waits for messages; bounds how long a stop waits for the pull to return.
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


def _consumer_config(settings: Settings) -> ConsumerConfig:
    return ConsumerConfig(
        ack_policy=JsAckPolicy.EXPLICIT,
        ack_wait=settings.ack_wait_s,
        max_deliver=settings.max_deliver,
        max_ack_pending=settings.max_ack_pending,
    )


def create_app(deps: Deps) -> FastStream:
    """The bundler app on `deps` (see bootstrap.open_deps)."""
    settings = deps.settings
    broker = deps.broker
    policy = Redelivery(max_deliver=settings.max_deliver, nak_delay_s=settings.nak_delay_s)

    async def build(cmd: BuildBundle) -> list[Event]:
        return list(
            await on_build_bundle(cmd, models=deps.models, store=deps.store, index=deps.index)
        )

    async def handle_command(cmd: Command) -> list[Event]:
        assert isinstance(cmd, BuildBundle)  # consume() checked `accepts`
        return await build(cmd)

    @broker.subscriber(
        command_subject(BuildBundle.kind),
        stream=JStream(COMMANDS_STREAM, declare=False),  # declared by ensure_jetstream
        durable=settings.durable,
        pull_sub=PullSub(batch_size=_BATCH, timeout=_PULL_TIMEOUT_S),
        config=_consumer_config(settings),
        ack_policy=AckPolicy.MANUAL,
        inbox_prefix=deps.pull_inbox,
    )
    async def on_build_bundle_msg(msg: NatsMessage) -> None:
        await consume(
            _Delivery(msg),
            accepts=(BuildBundle,),
            handle=handle_command,
            publish=deps.publish,
            policy=policy,
            source=SOURCE,
        )

    if settings.build_on_register:

        async def handle_registration(event: Event) -> list[Event]:
            assert isinstance(event, ModelRegistered)  # consume_event() checked `accepts`
            cmd = build_for_registration(event, repository=settings.auto_repository)
            try:
                return await build(cmd)
            except Rejected as exc:  # an event is never rejected: report the failed build
                return [
                    BundleFailed(
                        id=f"{cmd.id}.failed",
                        correlation_id=cmd.correlation_id,
                        source=SOURCE,
                        project=cmd.project,
                        reason=str(exc),
                    )
                ]

        @broker.subscriber(
            f"{MODEL_EVENTS}.{ModelRegistered.kind}",
            stream=JStream(EVENTS_STREAM, declare=False),
            durable=f"{settings.durable}-on-register",
            pull_sub=PullSub(batch_size=_BATCH, timeout=_PULL_TIMEOUT_S),
            config=_consumer_config(settings),
            ack_policy=AckPolicy.MANUAL,
            inbox_prefix=deps.pull_inbox,
        )
        async def on_model_registered_msg(msg: NatsMessage) -> None:
            await consume_event(
                _Delivery(msg),
                accepts=(ModelRegistered,),
                handle=handle_registration,
                publish=deps.publish,
                policy=policy,
            )

    return FastStream(broker, logger=None)


async def serve(
    settings: Settings | None = None,
    *,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Run the bundler until `stop` is set (forever if None); drain on the way out.

    `ready` is set once the streams exist and the consumers are subscribed.
    """
    settings = settings or Settings.from_env()
    stop = stop or asyncio.Event()
    async with open_deps(settings) as deps:
        app = create_app(deps)
        checks = {
            "nats": nats_ready_check(deps.nc),
            "jetstream": jetstream_ready_check(
                deps.js, streams=[COMMANDS_STREAM, EVENTS_STREAM], kv=[KV_MODELS, KV_BUNDLES]
            ),
        }
        async with health_server_from_env(service="bundler", ready_checks=checks) as health, app:
            log.info(
                "bundler.started",
                nats_url=settings.nats_url,
                store=settings.bundle_store,
                build_on_register=settings.build_on_register,
            )
            if ready is not None:
                ready.set()
            await stop.wait()
            if health is not None:
                health.draining()
        log.info("bundler.stopped")
