"""The bundler as a faststream app: a durable pull consumer of BuildBundle commands and, when
set to build on register, of ModelRegistered events.

`create_app(deps)` wires the consumers; `serve(settings)` opens the deps and runs the app until
asked to stop, so the embedded stack can run it next to other services in one process and
`python -m modelops_bundler` can run it alone.
"""

from __future__ import annotations

import asyncio

import structlog
from faststream import FastStream
from faststream.nats.annotations import NatsMessage

from modelops_contracts import BuildBundle, BundleFailed, Command, Event, ModelRegistered
from modelops_contracts.subjects import (
    COMMANDS_STREAM,
    EVENTS_STREAM,
    KV_BUNDLES,
    KV_MODELS,
    MODEL_EVENTS,
    command_subject,
)
from modelops_runtime.consumer import Redelivery, consume, consume_event
from modelops_runtime.faststream_glue import NatsDelivery, pull_subscriber, run_app

from .bootstrap import Deps, open_deps
from .errors import Rejected
from .handlers import SOURCE, build_for_registration, on_build_bundle
from .settings import Settings

__all__ = ["Settings", "create_app", "serve"]

log = structlog.get_logger(__name__)

# Builds mostly wait on the store; a few at once overlap that without flooding it.
_BATCH = 4
# How long one pull waits for messages; bounds how long a stop waits for the pull to return.
_PULL_TIMEOUT_S = 1.0


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

    @pull_subscriber(
        broker,
        command_subject(BuildBundle.kind),
        stream=COMMANDS_STREAM,
        durable=settings.durable,
        settings=settings,
        inbox=deps.pull_inbox,
        batch_size=_BATCH,
        pull_timeout_s=_PULL_TIMEOUT_S,
    )
    async def on_build_bundle_msg(msg: NatsMessage) -> None:
        await consume(
            NatsDelivery(msg),
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

        @pull_subscriber(
            broker,
            f"{MODEL_EVENTS}.{ModelRegistered.kind}",
            stream=EVENTS_STREAM,
            durable=f"{settings.durable}-on-register",
            settings=settings,
            inbox=deps.pull_inbox,
            batch_size=_BATCH,
            pull_timeout_s=_PULL_TIMEOUT_S,
        )
        async def on_model_registered_msg(msg: NatsMessage) -> None:
            await consume_event(
                NatsDelivery(msg),
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
    async with open_deps(settings) as deps:
        await run_app(
            create_app(deps),
            service="bundler",
            nc=deps.nc,
            js=deps.js,
            streams=[COMMANDS_STREAM, EVENTS_STREAM],
            kv=[KV_MODELS, KV_BUNDLES],
            stop=stop,
            ready=ready,
            nats_url=settings.nats_url,
            store=settings.bundle_store,
            build_on_register=settings.build_on_register,
        )
        log.info("bundler.stopped")
