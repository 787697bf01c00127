"""What the bundler records in the bundle index bucket (KV_BUNDLES), and under which keys.

Each pushed bundle is stored under its digest (`sha256.<hex>`: KV keys allow no ':'), and the
project's most recent one under `<project>/latest`, so other systems can find both without
talking to the OCI store.
"""

from __future__ import annotations

import msgspec

from modelops_contracts.refs import Digest

__all__ = ["BundleRecord", "digest_key", "latest_key"]


class BundleRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One pushed bundle: where it is, what it holds, and which command pushed it."""

    bundle_ref: str
    digest: Digest
    project: str
    repository: str
    tag: str
    models: dict[str, Digest]  # model id -> model digest
    size: int
    pushed_at: str  # RFC 3339 UTC
    correlation_id: str


def digest_key(digest: str) -> str:
    """`sha256.<hex>` for `sha256:<hex>`."""
    return digest.replace(":", ".", 1)


def latest_key(project: str) -> str:
    return f"{project}/latest"
