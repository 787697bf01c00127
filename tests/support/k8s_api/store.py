"""In-memory object store with one resourceVersion counter and a replayable event log.

Like etcd behind the API server, every write gets the next resourceVersion and an event;
a watch from version N replays what happened after N, then follows live writes. The store
is synchronous and single-threaded (it lives on the server's event loop), and hands out
deep copies so nobody can mutate stored state by accident.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .status import already_exists, not_found

__all__ = ["ObjectStore", "StoreEvent"]


@dataclass(frozen=True)
class StoreEvent:
    """One write: `old` is the previous state (None for ADDED), used to filter watches."""

    rv: int
    type: str
    resource: str
    namespace: str
    obj: dict[str, Any]
    old: dict[str, Any] | None


Listener = Callable[[StoreEvent], None]


class ObjectStore:
    def __init__(self, first_version: int = 1000) -> None:
        # Like etcd, versions never start at 0: "0" in a request means "any version".
        self._rv = first_version
        self._objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._history: list[StoreEvent] = []
        self._listeners: list[Listener] = []

    @property
    def resource_version(self) -> int:
        return self._rv

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any]:
        try:
            return copy.deepcopy(self._objects[(resource, namespace, name)])
        except KeyError:
            raise not_found(resource, name) from None

    def find(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self._objects.get((resource, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def list(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Objects of one resource in name order, across namespaces when `namespace` is None."""
        keys = sorted(k for k in self._objects if k[0] == resource and namespace in (None, k[1]))
        return [copy.deepcopy(self._objects[k]) for k in keys]

    def create(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        key = self._key(resource, obj)
        if key in self._objects:
            raise already_exists(resource, key[2])
        return self._write(resource, key, obj, "ADDED", None)

    def update(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        key = self._key(resource, obj)
        old = self._objects.get(key)
        if old is None:
            raise not_found(resource, key[2])
        return self._write(resource, key, obj, "MODIFIED", old)

    def delete(self, resource: str, namespace: str, name: str) -> dict[str, Any]:
        key = (resource, namespace, name)
        old = self._objects.pop(key, None)
        if old is None:
            raise not_found(resource, name)
        gone = copy.deepcopy(old)
        self._rv += 1
        gone["metadata"]["resourceVersion"] = str(self._rv)
        self._emit(StoreEvent(self._rv, "DELETED", resource, namespace, gone, old))
        return copy.deepcopy(gone)

    def events_since(self, rv: int) -> list[StoreEvent]:
        """Every event after `rv`; the log is never compacted (tests are short)."""
        return [e for e in self._history if e.rv > rv]

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` synchronously on each write; returns the unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _write(
        self,
        resource: str,
        key: tuple[str, str, str],
        obj: dict[str, Any],
        kind: str,
        old: dict[str, Any] | None,
    ) -> dict[str, Any]:
        self._rv += 1
        stored = copy.deepcopy(obj)
        stored["metadata"]["resourceVersion"] = str(self._rv)
        self._objects[key] = stored
        self._emit(StoreEvent(self._rv, kind, resource, key[1], copy.deepcopy(stored), old))
        return copy.deepcopy(stored)

    def _emit(self, event: StoreEvent) -> None:
        self._history.append(event)
        for listener in list(self._listeners):
            listener(event)

    @staticmethod
    def _key(resource: str, obj: dict[str, Any]) -> tuple[str, str, str]:
        meta = obj["metadata"]
        return (resource, meta["namespace"], meta["name"])
