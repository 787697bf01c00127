"""Adapters to NATS: the model registry bucket on JetStream KV, and event publishing.

The registry is one JSON Registry per project key. nats errors become the registrar's own: a
lost compare-and-set is RegistryConflict, an unreachable or slow server is Transient, and a
value that does not decode is Rejected (retrying cannot fix it; an operator must).
"""

from __future__ import annotations

from collections.abc import Sequence

import nats.errors
import nats.js.errors
import structlog
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from modelops_contracts import Event, InvalidMessage, Registry, decode, encode
from modelops_contracts.subjects import KV_MODELS

from .errors import RegistryConflict, Rejected, Transient
from .handlers import Versioned

__all__ = ["JetStreamPublisher", "NatsModelsStore"]

log = structlog.get_logger(__name__)

# Connection trouble and timeouts; everything else from nats is a bug or a bad request.
_TRANSIENT = (
    nats.errors.TimeoutError,
    nats.errors.ConnectionClosedError,
    nats.errors.NoRespondersError,
    nats.js.errors.ServiceUnavailableError,
    OSError,
)


class NatsModelsStore:
    """ModelsStore over a nats-py KeyValue bucket (KV_MODELS)."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    async def get(self, project: str) -> Versioned | None:
        try:
            entry = await self._kv.get(project)
        except nats.js.errors.KeyNotFoundError:  # also a deleted key
            return None
        except _TRANSIENT as exc:
            raise _unavailable("read", project, exc) from exc
        try:
            registry = decode(entry.value or b"", Registry)
        except InvalidMessage as exc:
            raise Rejected(
                f"stored registry of project {project!r} (revision {entry.revision}) is "
                f"unreadable: {exc.message}",
                field="project",
                hint=f"inspect it with 'nats kv get {KV_MODELS} {project}' and fix or delete it",
            ) from exc
        return Versioned(registry=registry, revision=int(entry.revision or 0))

    async def create(self, project: str, registry: Registry) -> int:
        try:
            return await self._kv.create(project, encode(registry))
        except nats.js.errors.KeyWrongLastSequenceError as exc:
            raise RegistryConflict(f"registry of {project!r} was created meanwhile") from exc
        except _TRANSIENT as exc:
            raise _unavailable("create", project, exc) from exc

    async def update(self, project: str, registry: Registry, *, revision: int) -> int:
        try:
            return await self._kv.update(project, encode(registry), last=revision)
        except nats.js.errors.KeyWrongLastSequenceError as exc:
            raise RegistryConflict(f"registry of {project!r} moved past {revision}") from exc
        except _TRANSIENT as exc:
            raise _unavailable("update", project, exc) from exc


def _unavailable(what: str, project: str, exc: BaseException) -> Transient:
    return Transient(
        f"cannot {what} the registry of project {project!r}: {type(exc).__name__}: {exc}",
        hint="is NATS JetStream up? the command will be retried",
    )


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
