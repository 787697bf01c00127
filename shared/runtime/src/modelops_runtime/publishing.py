"""Publishing a service's answers (consumer.Publish) through JetStream."""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from nats.js import JetStreamContext

from modelops_contracts import Event, encode

__all__ = ["JetStreamPublisher"]

log = structlog.get_logger(__name__)


class JetStreamPublisher:
    """Publishes events through JetStream, one at a time and in order, awaiting each PubAck.

    `Nats-Msg-Id` is the event id, so a republished answer (after a redelivery) is stored once.
    """

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js

    async def __call__(self, events: Sequence[Event]) -> None:
        for event in events:
            await self._js.publish(event.subject, encode(event), headers={"Nats-Msg-Id": event.id})
            log.debug("event.published", kind=event.kind, id=event.id, subject=event.subject)
