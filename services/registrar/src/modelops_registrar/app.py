"""The registrar as a faststream app: a durable pull consumer of RegisterModel commands.

`create_app(deps)` wires the consumer; `serve(settings)` opens the deps and runs the app until
asked to stop, so the embedded stack can run it next to other services in one process and
`python -m modelops_registrar` can run it alone.
"""

from __future__ import annotations

import asyncio

import structlog
from faststream import FastStream
from faststream.nats.annotations import NatsMessage

from modelops_contracts import Command, Event, RegisterModel
from modelops_contracts.subjects import COMMANDS_STREAM, EVENTS_STREAM, KV_MODELS, command_subject
from modelops_runtime.consumer import Redelivery, consume
from modelops_runtime.faststream_glue import NatsDelivery, pull_subscriber, run_app

from .bootstrap import Deps, open_deps
from .handlers import SOURCE, on_register_model
from .settings import Settings

__all__ = ["Settings", "create_app", "serve"]

log = structlog.get_logger(__name__)

# Registrations are small; a few at once keeps KV round trips overlapping without piling up
# compare-and-set conflicts on one project.
_BATCH = 8
# How long one pull waits for commands; bounds how long a stop waits for the pull to return.
_PULL_TIMEOUT_S = 1.0


def create_app(deps: Deps) -> FastStream:
    """The registrar app on `deps` (see bootstrap.open_deps)."""
    settings = deps.settings
    broker = deps.broker
    policy = Redelivery(max_deliver=settings.max_deliver, nak_delay_s=settings.nak_delay_s)

    async def handle(cmd: Command) -> list[Event]:
        assert isinstance(cmd, RegisterModel)  # consume() checked `accepts`
        return list(await on_register_model(cmd, store=deps.store, attempts=settings.kv_attempts))

    @pull_subscriber(
        broker,
        command_subject(RegisterModel.kind),
        stream=COMMANDS_STREAM,
        durable=settings.durable,
        settings=settings,
        inbox=deps.pull_inbox,
        batch_size=_BATCH,
        pull_timeout_s=_PULL_TIMEOUT_S,
    )
    async def on_register_model_msg(msg: NatsMessage) -> None:
        await consume(
            NatsDelivery(msg),
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
    async with open_deps(settings) as deps:
        await run_app(
            create_app(deps),
            service="registrar",
            nc=deps.nc,
            js=deps.js,
            streams=[COMMANDS_STREAM, EVENTS_STREAM],
            kv=[KV_MODELS],
            stop=stop,
            ready=ready,
            nats_url=settings.nats_url,
            durable=settings.durable,
        )
        log.info("registrar.stopped")
