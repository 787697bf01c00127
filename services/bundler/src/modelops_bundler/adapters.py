"""Adapters to NATS: the registrar's registry bucket (read) and the bundle index bucket
(write); events are published by modelops_runtime.publishing."""

from __future__ import annotations

import nats.errors
import nats.js.errors
from nats.js.kv import KeyValue

from modelops_contracts import InvalidMessage, Registry, decode, encode
from modelops_contracts.subjects import KV_MODELS

from .errors import Rejected, Transient
from .records import BundleRecord, digest_key, latest_key

__all__ = ["NatsBundleIndex", "NatsRegistrySource"]

# Connection trouble and timeouts; everything else from nats is a bug or a bad request.
_TRANSIENT = (
    nats.errors.TimeoutError,
    nats.errors.ConnectionClosedError,
    nats.errors.NoRespondersError,
    nats.js.errors.ServiceUnavailableError,
    OSError,
)


def _unavailable(what: str, exc: BaseException) -> Transient:
    return Transient(
        f"cannot {what}: {type(exc).__name__}: {exc}",
        hint="is NATS JetStream up? the command will be retried",
    )


class NatsRegistrySource:
    """RegistrySource over the registrar's KV_MODELS bucket (read only)."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    async def get(self, project: str) -> Registry | None:
        try:
            entry = await self._kv.get(project)
        except nats.js.errors.KeyNotFoundError:  # also a deleted key
            return None
        except _TRANSIENT as exc:
            raise _unavailable(f"read the registry of project {project!r}", exc) from exc
        try:
            return decode(entry.value or b"", Registry)
        except InvalidMessage as exc:
            raise Rejected(
                f"stored registry of project {project!r} is unreadable: {exc.message}",
                field="project",
                hint=f"inspect it with 'nats kv get {KV_MODELS} {project}' and fix or delete it",
            ) from exc


class NatsBundleIndex:
    """BundleIndex over the KV_BUNDLES bucket."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    async def record(self, record: BundleRecord) -> None:
        value = encode(record)
        try:
            await self._kv.put(digest_key(record.digest), value)
            await self._kv.put(latest_key(record.project), value)
        except _TRANSIENT as exc:
            raise _unavailable(f"record bundle {record.digest}", exc) from exc
