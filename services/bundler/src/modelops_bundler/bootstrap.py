"""The one place the bundler builds real clients: NATS (a client for KV and publishing, and the
faststream broker that consumes), JetStream streams and buckets, and the bundle store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from faststream.nats import NatsBroker

from modelops_bundle.stores import BundleStore, open_store
from modelops_contracts.subjects import KV_BUNDLES, KV_MODELS
from modelops_runtime.consumer import Publish
from modelops_runtime.faststream_glue import make_broker, pull_inbox
from modelops_runtime.nats_setup import ensure_jetstream
from modelops_runtime.publishing import JetStreamPublisher
from modelops_runtime.service import connect_service

from .adapters import NatsBundleIndex, NatsRegistrySource
from .handlers import BundleIndex, RegistrySource
from .settings import Settings

__all__ = ["Deps", "open_deps"]

NAME = "modelops-bundler"


@dataclass(frozen=True)
class Deps:
    """Everything the app wires into its handlers."""

    settings: Settings
    models: RegistrySource
    index: BundleIndex
    store: BundleStore
    publish: Publish
    broker: NatsBroker
    pull_inbox: bytes  # where pulled messages are delivered: inside our user's inbox
    nc: Any = None  # the raw clients, for readiness checks
    js: Any = None


@asynccontextmanager
async def open_deps(settings: Settings) -> AsyncIterator[Deps]:
    """Open the bundle store, connect to NATS (waiting up to its first-connect deadline),
    declare streams and buckets, and yield the deps; drain and close on exit."""
    store = open_store(settings.bundle_store, insecure=settings.store_insecure)
    try:
        nc = await connect_service(settings, name=NAME)
        try:
            js = nc.jetstream()
            await ensure_jetstream(js)
            yield Deps(
                settings=settings,
                models=NatsRegistrySource(await js.key_value(KV_MODELS)),
                index=NatsBundleIndex(await js.key_value(KV_BUNDLES)),
                store=store,
                publish=JetStreamPublisher(js),
                broker=make_broker(settings, name=NAME),
                pull_inbox=pull_inbox(settings),
                nc=nc,
                js=js,
            )
        finally:
            await nc.drain()
    finally:
        await asyncio.to_thread(store.close)
