"""Bundle indexes from the deployment's bundle store (port: BundleIndexes).

The store is the one in settings, whatever host a reference names: the digest says what the
bundle is, so reading it from our own store is both safe (no fetches from hosts a command
chooses) and what the runners will do. Indexes are content-addressed, so a small cache by
digest is never stale.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from modelops_bundle.oci import BundleIndex
from modelops_bundle.pull import read_bundle_index
from modelops_bundle.stores import BundleStore

__all__ = ["StoreBundleIndexes"]


class StoreBundleIndexes:
    """BundleIndexes over a (synchronous) BundleStore, called in threads."""

    def __init__(self, store: BundleStore, *, cache_size: int = 64) -> None:
        self.store = store
        self.cache_size = cache_size
        self._cache: OrderedDict[str, BundleIndex] = OrderedDict()

    async def resolve(self, repository: str, tag: str) -> str:
        return await asyncio.to_thread(self.store.resolve, repository, tag)

    async def index(self, repository: str, digest: str) -> BundleIndex:
        key = f"{repository}@{digest}"
        found = self._cache.get(key)
        if found is not None:
            self._cache.move_to_end(key)
            return found
        index = await asyncio.to_thread(
            read_bundle_index, self.store, digest, repository=repository
        )
        self._cache[key] = index
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return index

    async def aclose(self) -> None:
        await asyncio.to_thread(self.store.close)
