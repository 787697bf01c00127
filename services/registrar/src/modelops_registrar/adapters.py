"""Adapters to NATS: the model registry bucket on JetStream KV (events are published by
modelops_runtime.publishing).

The registry is one JSON Registry per project key. nats errors become the registrar's own: a
lost compare-and-set is RegistryConflict, an unreachable or slow server is Transient, and a
value that does not decode is Rejected (retrying cannot fix it; an operator must).
"""

from __future__ import annotations

import nats.errors
import nats.js.errors
from nats.js.kv import KeyValue

from modelops_contracts import InvalidMessage, Registry, decode, encode
from modelops_contracts.subjects import KV_MODELS

from .errors import RegistryConflict, Rejected, Transient
from .handlers import Versioned

__all__ = ["NatsModelsStore"]

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
