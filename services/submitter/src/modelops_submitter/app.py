"""The submitter as a FastStream app: commands through a durable pull subscriber, task events
through the tracker's pull loop (see consume.py), job recovery at start-up.

`create_app(runtime)` is the one public entry the CLI's embedded stack uses; `serve(settings)`
runs the service until `stop` is set (or the task is cancelled) and closes everything.
"""

from __future__ import annotations

import asyncio

import structlog
from faststream import FastStream
from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.annotations import NatsMessage

from modelops_contracts.subjects import (
    COMMANDS_STREAM,
    EVENTS_STREAM,
    KV_BUNDLES,
    KV_JOBS,
    TASKS_STREAM,
)
from modelops_runtime.health import (
    health_server_from_env,
    jetstream_ready_check,
    nats_ready_check,
)

from .bootstrap import (
    COMMANDS_CONSUMER,
    EVENTS_CONSUMER,
    Runtime,
    bootstrap,
    commands_consumer_config,
)
from .consume import NAK_DELAY_S, EventLoop, handle_command
from .handlers import resume_runners
from .settings import Settings

__all__ = ["Settings", "create_app", "serve"]

log = structlog.get_logger(__name__)


def create_app(runtime: Runtime) -> FastStream:
    """Wire the command subscriber and the tracker loop around built dependencies."""
    settings, deps = runtime.settings, runtime.deps
    broker = NatsBroker(
        settings.nats_connect_url,
        user_credentials=settings.nats_creds,
        name="modelops-submitter-commands",
        logger=None,  # our handlers log with structlog; FastStream's own lines would duplicate
    )
    events = EventLoop(runtime.js, deps.tracking, stream=EVENTS_STREAM, consumer=EVENTS_CONSUMER)

    @broker.subscriber(
        "",
        stream=JStream(COMMANDS_STREAM, declare=False),  # streams are declared by nats_setup
        durable=COMMANDS_CONSUMER,
        config=commands_consumer_config(settings),
        pull_sub=PullSub(batch_size=1, timeout=1.0),  # one at a time: see the config
        ack_policy=AckPolicy.MANUAL,
    )
    async def on_command(msg: NatsMessage) -> None:
        raw = msg.raw_message
        outcome = await handle_command(
            msg.body,
            deps,
            delivered=raw.metadata.num_delivered,
            max_deliver=settings.command_max_deliver,
            heartbeat=msg.in_progress,
            heartbeat_every_s=settings.command_ack_wait_s / 3,
        )
        if outcome == "ack":
            await msg.ack()
        elif outcome == "nak":
            await msg.nack(delay=NAK_DELAY_S)
        else:
            await msg.reject()

    app = FastStream(broker, logger=None)

    @app.on_startup
    async def recover() -> None:
        await deps.tracking.recover()  # before new events: jobs interrupted by a restart
        await resume_runners(deps)  # jobs whose runners a clean shutdown stopped

    @app.after_startup
    async def start_events() -> None:
        events.start()

    @app.on_shutdown
    async def stop_events() -> None:
        await events.stop()

    return app


async def serve(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Run the submitter until `stop` is set or the task is cancelled; then close cleanly.

    `ready` is set once commands are being consumed (the embedded stack waits for it).
    """
    runtime = await bootstrap(settings)
    try:
        app = create_app(runtime)
        checks = {
            "nats": nats_ready_check(runtime.nc),
            "jetstream": jetstream_ready_check(
                runtime.js,
                streams=[COMMANDS_STREAM, EVENTS_STREAM, TASKS_STREAM],
                kv=[KV_JOBS, KV_BUNDLES],
            ),
        }
        async with health_server_from_env(service="submitter", ready_checks=checks) as health, app:
            log.info("submitter.serving")
            if ready is not None:
                ready.set()
            await (stop or asyncio.Event()).wait()
            if health is not None:
                health.draining()
    finally:
        await runtime.close()
        log.info("submitter.stopped")
