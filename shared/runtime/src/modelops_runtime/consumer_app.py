"""A consuming service as a faststream app: its durable pull consumers and how it is served.

The registrar and the bundler differ only in what they consume and how they handle it. How a
message is pulled, settled (consumer.consume / consume_event), answered on the bus, and how the
app runs next to its health server until stopped is the same for both and lives here, so each
service's app.py states only its subscriptions (`Consumers`) and what it needs to run
(`ConsumerService`):

    consumers = Consumers(deps, batch_size=8)
    consumers.commands(RegisterModel, register, source=SOURCE)
    return consumers.app()
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import structlog
from faststream import FastStream
from faststream.nats import NatsBroker
from faststream.nats.annotations import NatsMessage

from modelops_contracts import Command, Event
from modelops_contracts.subjects import COMMANDS_STREAM, EVENTS_STREAM, command_subject
from modelops_runtime.consumer import Publish, Redelivery, consume, consume_event
from modelops_runtime.faststream_glue import NatsDelivery, PullSettings, pull_subscriber, run_app

__all__ = ["ConsumerDeps", "ConsumerService", "ConsumerSettings", "Consumers"]

log = structlog.get_logger(__name__)

C = TypeVar("C", bound=Command)
E = TypeVar("E", bound=Event)
D = TypeVar("D", bound="ConsumerDeps")
S = TypeVar("S", bound="ConsumerSettings")

# How long one pull waits for messages; bounds how long a stop waits for the pull to return.
_PULL_TIMEOUT_S = 1.0


class ConsumerSettings(PullSettings, Protocol):
    """The settings a consuming service carries besides PullSettings."""

    @property
    def durable(self) -> str: ...
    @property
    def nak_delay_s(self) -> float: ...


class ConsumerDeps(Protocol):
    """What a service's bootstrap.Deps offers the wiring: settings, broker, inbox, publisher and
    the raw clients (for readiness checks)."""

    @property
    def settings(self) -> ConsumerSettings: ...
    @property
    def broker(self) -> NatsBroker: ...
    @property
    def pull_inbox(self) -> bytes: ...
    @property
    def publish(self) -> Publish: ...
    @property
    def nc(self) -> Any: ...
    @property
    def js(self) -> Any: ...


class Consumers:
    """Subscribes a service's handlers as durable pull consumers on its broker.

    Every consumer pulls `batch_size` messages at a time, answers through `deps.publish` and
    retries transient failures by the service's redelivery settings.
    """

    def __init__(
        self, deps: ConsumerDeps, *, batch_size: int, pull_timeout_s: float = _PULL_TIMEOUT_S
    ) -> None:
        self._deps = deps
        self._batch_size = batch_size
        self._pull_timeout_s = pull_timeout_s
        settings = deps.settings
        self._policy = Redelivery(
            max_deliver=settings.max_deliver, nak_delay_s=settings.nak_delay_s
        )

    def _subscriber(self, subject: str, *, stream: str, durable: str) -> Any:
        return pull_subscriber(
            self._deps.broker,
            subject,
            stream=stream,
            durable=durable,
            settings=self._deps.settings,
            inbox=self._deps.pull_inbox,
            batch_size=self._batch_size,
            pull_timeout_s=self._pull_timeout_s,
        )

    def commands(
        self,
        command: type[C],
        handle: Callable[[C], Awaitable[Sequence[Event]]],
        *,
        source: str,
    ) -> None:
        """Consume `command` from its subject under the service's durable; a command of another
        type, or one `handle` rejects, is answered with CommandRejected as `source`."""

        async def on_command(cmd: Command) -> Sequence[Event]:
            assert isinstance(cmd, command)  # consume() checked `accepts`
            return await handle(cmd)

        @self._subscriber(
            command_subject(command.kind),
            stream=COMMANDS_STREAM,
            durable=self._deps.settings.durable,
        )
        async def on_message(msg: NatsMessage) -> None:
            await consume(
                NatsDelivery(msg),
                accepts=(command,),
                handle=on_command,
                publish=self._deps.publish,
                policy=self._policy,
                source=source,
            )

    def events(
        self,
        event: type[E],
        handle: Callable[[E], Awaitable[Sequence[Event]]],
        *,
        subject: str,
        durable: str,
    ) -> None:
        """Consume `event`s published on `subject` under their own `durable` (a service reacting
        to events keeps a consumer per reaction, next to its commands one)."""

        async def on_event(received: Event) -> Sequence[Event]:
            assert isinstance(received, event)  # consume_event() checked `accepts`
            return await handle(received)

        @self._subscriber(subject, stream=EVENTS_STREAM, durable=durable)
        async def on_message(msg: NatsMessage) -> None:
            await consume_event(
                NatsDelivery(msg),
                accepts=(event,),
                handle=on_event,
                publish=self._deps.publish,
                policy=self._policy,
            )

    def app(self) -> FastStream:
        """The app running every consumer subscribed so far."""
        return FastStream(self._deps.broker, logger=None)


@dataclass(frozen=True)
class ConsumerService(Generic[S, D]):
    """What tells one consuming service from another; serving it is the same for all.

    `serve` is the service's entry point (the embedded stack and `python -m` call it):

        serve = ConsumerService("registrar", Settings.from_env, open_deps, create_app, ...).serve
    """

    name: str
    settings_from_env: Callable[[], S]
    open_deps: Callable[[S], AbstractAsyncContextManager[D]]
    create_app: Callable[[D], FastStream]
    streams: Sequence[str]  # what /readyz checks exists
    kv: Sequence[str]
    started: Callable[[S], Mapping[str, Any]]  # the fields of the `<name>.started` log line

    async def serve(
        self,
        settings: S | None = None,
        *,
        stop: asyncio.Event | None = None,
        ready: asyncio.Event | None = None,
    ) -> None:
        """Run the service until `stop` is set (forever if None); drain on the way out.

        Settings default to the environment's. `ready` is set once the streams exist and the
        consumers are subscribed.
        """
        settings = settings or self.settings_from_env()
        async with self.open_deps(settings) as deps:
            await run_app(
                self.create_app(deps),
                service=self.name,
                nc=deps.nc,
                js=deps.js,
                streams=self.streams,
                kv=self.kv,
                stop=stop,
                ready=ready,
                **self.started(settings),
            )
            log.info(f"{self.name}.stopped")
