"""Push and pull as single calls for `bench.rss` to run in a fresh process and weigh.

They take and return JSON-able values only, because they cross a process boundary.
"""

from __future__ import annotations

from pathlib import Path

from modelops_bundle.pull import pull_bundle
from modelops_bundle.push import push_bundle
from modelops_bundle.registry_file import dump_registry, load_registry
from modelops_bundle.stores import open_store

__all__ = ["pull_probe", "push_probe"]


def push_probe(root: str, registry_host: str, repository: str) -> dict[str, object]:
    """Push the registered project at `root` to `repository` (which should be new)."""
    registry = load_registry(Path(root))
    store = open_store(registry_host)
    try:
        result = push_bundle(
            root, registry, store, repository=repository, registry_yaml=dump_registry(registry)
        )
    finally:
        store.close()
    return {"bundle_ref": result.bundle.bundle_ref, "bytes_sent": result.upload.bytes_sent}


def pull_probe(registry_host: str, bundle_ref: str, cache_dir: str) -> dict[str, object]:
    """Pull `bundle_ref` into `cache_dir` (which should be empty)."""
    store = open_store(registry_host)
    try:
        tree = pull_bundle(store, bundle_ref, cache_dir=cache_dir)
    finally:
        store.close()
    return {"tree": str(tree)}
