"""In-memory stand-ins for the registrar's ports: a compare-and-set registry store and a
delivery that records how it was settled."""

from __future__ import annotations

import asyncio

from modelops_contracts import Event, Registry, decode, encode
from modelops_registrar.errors import RegistryConflict, Transient
from modelops_registrar.handlers import Versioned
from tests.support.deliveries import FakeDelivery

__all__ = ["FakeDelivery", "MemoryModelsStore", "Published"]


class MemoryModelsStore:
    """ModelsStore in memory with the KV's revision semantics (one sequence per bucket).

    Values go through the wire encoding, as in KV. `yield_between` lets other tasks run
    between a read and the write that follows it, so concurrent handlers really interleave;
    `conflicts` makes the next N writes lose; `down` makes every call Transient.
    """

    def __init__(self) -> None:
        self.values: dict[str, tuple[bytes, int]] = {}
        self.seq = 0
        self.writes = 0
        self.conflicts = 0
        self.lost = 0  # writes refused because the revision moved
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise Transient("KV unreachable (test)")

    async def get(self, project: str) -> Versioned | None:
        self._check()
        await asyncio.sleep(0)
        found = self.values.get(project)
        if found is None:
            return None
        return Versioned(registry=decode(found[0], Registry), revision=found[1])

    def _write(self, project: str, registry: Registry, expected: int) -> int:
        current = self.values.get(project, (b"", 0))[1]
        if self.conflicts:
            self.conflicts -= 1
            raise RegistryConflict("injected conflict")
        if current != expected:
            self.lost += 1
            raise RegistryConflict(f"{project} at {current}, expected {expected}")
        self.seq += 1
        self.writes += 1
        self.values[project] = (encode(registry), self.seq)
        return self.seq

    async def create(self, project: str, registry: Registry) -> int:
        self._check()
        await asyncio.sleep(0)
        return self._write(project, registry, 0)

    async def update(self, project: str, registry: Registry, *, revision: int) -> int:
        self._check()
        await asyncio.sleep(0)
        return self._write(project, registry, revision)

    def registry(self, project: str) -> Registry:
        return decode(self.values[project][0], Registry)


class Published:
    """A Publish that records events (or fails, when `fail` is set)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.fail: BaseException | None = None

    async def __call__(self, events: list[Event]) -> None:
        if self.fail is not None:
            raise self.fail
        self.events.extend(events)
