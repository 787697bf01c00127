"""Pulling bundles: fetch by digest, verify every byte, materialize into the shared cache.

Nothing fetched is trusted until hashed: the manifest against the digest we asked for, then
the config and every file blob against the digests the (now verified) manifest and index
name, each while streaming into the cache's staging folder. Only a fully verified tree is
renamed into place; a complete copy is reused without touching the network.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import structlog

from modelops_contracts import BundleRef, parse_bundle_ref

from .errors import BundleError, IntegrityError
from .materialize import bundle_lock, complete_tree, materialize, staging, unsynced_boot_id
from .oci import (
    BundleIndex,
    BundleManifest,
    Descriptor,
    InvalidBundle,
    check_layers_match,
    parse_bundle_config,
    parse_bundle_manifest,
    sha256_digest,
)
from .stores.base import BundleStore, check_digest, check_repository, run_concurrently
from .stores.files import write_verified

__all__ = ["pull_bundle", "read_bundle_index", "resolve_target"]

log = structlog.get_logger(__name__)

MAX_CONFIG_BYTES = 64 << 20  # a bundle index with registry.yaml; far beyond any real one


def resolve_target(ref: str | BundleRef, repository: str | None) -> tuple[str, str]:
    """(repository, digest) from a bundle reference, or a bare digest plus `repository`."""
    if isinstance(ref, str) and ref.startswith("sha256:"):
        if not repository:
            raise BundleError(
                f"bare digest {ref} needs a repository to pull from",
                hint="pass repository=..., or use a full host/repo@sha256:... reference",
            )
        return check_repository(repository), check_digest(ref)
    parsed = ref if isinstance(ref, BundleRef) else parse_bundle_ref(ref)
    if repository and repository != parsed.repository:
        raise BundleError(
            f"reference {parsed} is in repository {parsed.repository!r}, not {repository!r}"
        )
    return parsed.repository, parsed.digest


def _fetch_manifest(
    store: BundleStore, repository: str, digest: str
) -> tuple[bytes, BundleManifest]:
    data = store.get_manifest(repository, digest)
    actual = sha256_digest(data)
    if actual != digest:
        raise IntegrityError(
            f"manifest {repository}@{digest} from {store!r} hashes to {actual}",
            hint="the store returned other content for this digest; do not use it",
        )
    return data, parse_bundle_manifest(data)


def _read_config(store: BundleStore, repository: str, config: Descriptor) -> bytes:
    """The config blob, verified in memory (it is small and bounded)."""
    if config.size > MAX_CONFIG_BYTES:
        raise InvalidBundle(
            f"bundle index {config.digest} is {config.size} bytes, over the 64 MiB limit"
        )
    body = bytearray()
    with contextlib.closing(store.open_blob(repository, config.digest)) as chunks:
        for chunk in chunks:
            body += chunk
            if len(body) > config.size:
                break
    data = bytes(body)
    if len(data) != config.size or sha256_digest(data) != config.digest:
        raise IntegrityError(
            f"bundle index (config blob {config.digest}) does not match its digest",
            hint="the stored blob is corrupt or was replaced; re-push the bundle",
        )
    return data


def read_bundle_index(
    store: BundleStore,
    ref: str | BundleRef,
    *,
    repository: str | None = None,
    entrypoint: str | None = None,
) -> BundleIndex:
    """The verified index of a bundle, without its files (for the submitter).

    With `entrypoint`, also checks that the bundle has that model (ModelNotFound if not).
    """
    repository, digest = resolve_target(ref, repository)
    _, manifest = _fetch_manifest(store, repository, digest)
    index = parse_bundle_config(_read_config(store, repository, manifest.config))
    check_layers_match(manifest, index)
    if entrypoint is not None:
        index.model_for(entrypoint)
    return index


def pull_bundle(
    store: BundleStore,
    bundle_ref_or_digest: str | BundleRef,
    *,
    cache_dir: str | os.PathLike[str],
    repository: str | None = None,
    concurrency: int = 4,
) -> Path:
    """The folder holding bundle `ref`'s files, verified: `cache_dir/<manifest hex>/`.

    Reuses a complete cached copy without network. Otherwise downloads under a per-bundle
    lock (concurrent pullers on this host wait and share the result). Raises IntegrityError
    naming the blob and path on any mismatch, UnsafePath/InvalidBundle for a bad index; a
    failed pull leaves nothing in `cache_dir`.
    """
    repository, digest = resolve_target(bundle_ref_or_digest, repository)
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    if (tree := complete_tree(cache, digest)) is not None:
        log.debug("bundle.cache_hit", digest=digest, path=str(tree))
        return tree
    with bundle_lock(cache, digest):
        if (tree := complete_tree(cache, digest)) is not None:
            log.debug("bundle.cache_hit", digest=digest, path=str(tree), waited=True)
            return tree
        with staging(cache, digest) as stage:
            _, manifest = _fetch_manifest(store, repository, digest)
            config_bytes = _read_config(store, repository, manifest.config)
            index = parse_bundle_config(config_bytes)
            check_layers_match(manifest, index)
            paths: dict[str, list[str]] = {}
            sizes: dict[str, int] = {}
            for f in index.files:
                paths.setdefault(f.digest, []).append(f.path)
                sizes[f.digest] = f.size

            durable = unsynced_boot_id() is None  # see materialize: the marker covers it

            def fetch(blob: str) -> int:
                with contextlib.closing(store.open_blob(repository, blob)) as chunks:
                    return write_verified(
                        chunks,
                        stage.blob(blob),
                        digest=blob,
                        size=sizes[blob],
                        name=f"bundle file {', '.join(paths[blob][:3])} (blob {blob})",
                        durable=durable,
                    )

            received = sum(run_concurrently(fetch, sorted(paths), concurrency))
            tree = materialize(stage, index, config_bytes, cache_dir=cache, digest=digest)
    log.info(
        "bundle.materialized",
        bundle=f"{repository}@{digest}",
        path=str(tree),
        files=len(index.files),
        bytes=received,
    )
    return tree
