"""The one place the registrar builds real clients: NATS (a client for KV and publishing, and
the faststream broker that consumes), JetStream streams and the registry bucket."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import structlog
from faststream.nats import NatsBroker
from faststream.nats.security import NatsCredentials, NatsSecurity, NatsUserPassword

from modelops_contracts.subjects import KV_MODELS
from modelops_runtime.nats_setup import connect, ensure_jetstream

from .adapters import JetStreamPublisher, NatsModelsStore
from .consumer import Publish
from .handlers import ModelsStore
from .settings import Settings

__all__ = ["Deps", "make_broker", "open_deps"]

log = structlog.get_logger(__name__)

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


def _inbox(settings: Settings) -> str:
    """A deploy user may only receive on `_INBOX.<user>.>` (deploy/nats/nats-server.conf)."""
    return f"_INBOX.{settings.nats_user}" if settings.nats_user else "_INBOX"


def _security(settings: Settings) -> NatsSecurity | None:
    if settings.nats_creds:
        return NatsCredentials(settings.nats_creds)
    if settings.nats_user:
        return NatsUserPassword(settings.nats_user, settings.nats_password or "")
    return None


def make_broker(settings: Settings) -> NatsBroker:
    """The faststream broker (its own connection, made when the app starts)."""
    return NatsBroker(
        settings.nats_url,
        name=f"{NAME}-consumer",
        security=_security(settings),
        inbox_prefix=_inbox(settings),
        max_reconnect_attempts=-1,  # a service outlives NATS restarts
        logger=log,
        log_level=logging.DEBUG,  # per-message "Received/Processed": we log outcomes ourselves
    )


@asynccontextmanager
async def open_deps(settings: Settings) -> AsyncIterator[Deps]:
    """Connect (waiting for NATS up to its first-connect deadline), declare the streams and
    buckets, and yield the deps; drain the connection on exit."""
    nc = await connect(
        settings.nats_url,
        name=NAME,
        credentials=settings.nats_creds,
        user=settings.nats_user,
        password=settings.nats_password,
        inbox_prefix=_inbox(settings),
    )
    try:
        js = nc.jetstream()
        await ensure_jetstream(js)
        kv = await js.key_value(KV_MODELS)
        yield Deps(
            settings=settings,
            store=NatsModelsStore(kv),
            publish=JetStreamPublisher(js),
            broker=make_broker(settings),
            pull_inbox=f"{_inbox(settings)}.".encode(),
            nc=nc,
            js=js,
        )
    finally:
        await nc.drain()
