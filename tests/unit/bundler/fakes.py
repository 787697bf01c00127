"""In-memory stand-ins for the bundler's KV ports, and a delivery that records settling."""

from __future__ import annotations

from dataclasses import dataclass

from modelops_bundler.errors import Transient
from modelops_bundler.records import BundleRecord, digest_key, latest_key
from modelops_contracts import Event, Registry
from tests.support.deliveries import FakeDelivery as BaseDelivery

__all__ = ["FakeDelivery", "MemoryBundleIndex", "MemoryRegistries", "Published"]


class MemoryRegistries:
    """RegistrySource over a dict of project -> Registry."""

    def __init__(self, registries: dict[str, Registry] | None = None) -> None:
        self.registries = dict(registries or {})

    async def get(self, project: str) -> Registry | None:
        return self.registries.get(project)


class MemoryBundleIndex:
    """BundleIndex keeping records by the same keys as the KV adapter."""

    def __init__(self) -> None:
        self.records: dict[str, BundleRecord] = {}
        self.down = False

    async def record(self, record: BundleRecord) -> None:
        if self.down:
            raise Transient("KV unreachable (test)")
        self.records[digest_key(record.digest)] = record
        self.records[latest_key(record.project)] = record


@dataclass
class FakeDelivery(BaseDelivery):
    """A delivery of a BuildBundle command, by default."""

    subject: str = "modelops.cmd.build_bundle"


class Published:
    """A Publish that records events."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def __call__(self, events: list[Event]) -> None:
        self.events.extend(events)
