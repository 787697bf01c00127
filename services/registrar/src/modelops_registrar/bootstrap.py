"""The one place the registrar builds real clients: NATS (a client for KV and publishing, and
the faststream broker that consumes), JetStream streams and the registry bucket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from faststream.nats import NatsBroker

from modelops_contracts.subjects import KV_MODELS
from modelops_runtime.consumer import Publish
from modelops_runtime.faststream_glue import make_broker, pull_inbox
from modelops_runtime.nats_setup import ensure_jetstream
from modelops_runtime.publishing import JetStreamPublisher
from modelops_runtime.service import connect_service

from .adapters import NatsModelsStore
from .handlers import ModelsStore
from .settings import Settings

__all__ = ["Deps", "open_deps"]

NAME = "modelops-registrar"


@dataclass(frozen=True)
class Deps:
    """Everything the app wires into its handler."""

    settings: Settings
    store: ModelsStore
    publish: Publish
    broker: NatsBroker
    pull_inbox: bytes  # where pulled messages are delivered: inside our user's inbox
    nc: Any = None  # the raw clients, for readiness checks
    js: Any = None


@asynccontextmanager
async def open_deps(settings: Settings) -> AsyncIterator[Deps]:
    """Connect (waiting for NATS up to its first-connect deadline), declare the streams and
    buckets, and yield the deps; drain the connection on exit."""
    nc = await connect_service(settings, name=NAME)
    try:
        js = nc.jetstream()
        await ensure_jetstream(js)
        kv = await js.key_value(KV_MODELS)
        yield Deps(
            settings=settings,
            store=NatsModelsStore(kv),
            publish=JetStreamPublisher(js),
            broker=make_broker(settings, name=NAME),
            pull_inbox=pull_inbox(settings),
            nc=nc,
            js=js,
        )
    finally:
        await nc.drain()
