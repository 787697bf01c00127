"""The BundleStore protocol every OCI store implements, and `open_store` to pick one.

Methods are synchronous (oras and file I/O are); async callers wrap them in
`asyncio.to_thread`. Blobs are addressed by repository and digest because a registry scopes
blobs to a repository; a layout folder keeps one blob pool and ignores the repository.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

from modelops_contracts import InvalidBundleRef, parse_bundle_ref
from modelops_contracts.refs import DIGEST_PATTERN

from ..errors import BundleError, StoreError

__all__ = [
    "BlobStream",
    "BundleStore",
    "ProgressFn",
    "StoreLocation",
    "check_digest",
    "check_repository",
    "check_tag",
    "is_loopback",
    "open_store",
    "parse_location",
    "run_concurrently",
]

T = TypeVar("T")
R = TypeVar("R")

BlobStream = Generator[bytes, None, None]
"""Chunks of a blob as they arrive; `close()` it (contextlib.closing) if you stop early."""

ProgressFn = Callable[[int], None]
"""Called with the number of bytes just sent or received (from any thread)."""

_DIGEST_RE = re.compile(DIGEST_PATTERN)
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}\Z")
_HOSTPORT_RE = re.compile(
    r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(?::(?P<port>[0-9]{1,5}))?\Z"
)


@runtime_checkable
class BundleStore(Protocol):
    """Where bundles live: an OCI registry or an OCI image-layout folder."""

    ref_host: str
    """Host part of the bundle references this store hands out (`local` for a layout)."""

    def blob_exists(self, repository: str, digest: str) -> bool: ...

    def push_blob(
        self,
        repository: str,
        digest: str,
        path: Path,
        size: int,
        progress: ProgressFn | None = None,
    ) -> int:
        """Upload a file's bytes as blob `digest`, streaming; returns bytes sent.

        Callers check `blob_exists` first (a store may also skip a blob it has, returning 0).
        The store refuses content that does not hash to `digest` (IntegrityError).
        """
        ...

    def push_blob_bytes(self, repository: str, digest: str, data: bytes) -> None: ...

    def open_blob(self, repository: str, digest: str) -> BlobStream:
        """Chunks of a blob as they arrive, unverified: the caller hashes them.

        Close the iterator (`contextlib.closing`) if you stop early.
        """
        ...

    def push_manifest(self, repository: str, manifest_bytes: bytes, reference: str) -> str:
        """Store a manifest under a tag or its digest; returns the manifest digest."""
        ...

    def get_manifest(self, repository: str, reference: str) -> bytes:
        """The exact manifest bytes for a tag or digest (unverified), or BundleNotFound."""
        ...

    def resolve(self, repository: str, tag: str) -> str:
        """The manifest digest a tag points at, or BundleNotFound."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class StoreLocation:
    """A parsed store location: a layout folder, or a registry host and scheme."""

    kind: str  # "layout" | "registry"
    path: Path | None = None
    host: str | None = None
    scheme: str | None = None  # "http", "https", or None (decide by host)


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (with or without a port)."""
    m = _HOSTPORT_RE.match(host)
    name = (m["host"] if m else host).strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def parse_location(location: str) -> StoreLocation:
    """Classify a store location string. Pure.

    `oci-layout:PATH`, an absolute path, or one starting with `.` or `~` is a layout folder;
    `http(s)://host[:port]` is a registry; a bare word is a registry host when it contains a
    `.` or `:` or is `localhost` (Docker's rule), else a folder.
    """
    if not location:
        raise BundleError("empty store location", hint="use host:port or oci-layout:/path")
    if location.startswith("oci-layout:"):
        return StoreLocation(
            kind="layout", path=Path(location.removeprefix("oci-layout:")).expanduser()
        )
    for scheme in ("http", "https"):
        prefix = f"{scheme}://"
        if location.startswith(prefix):
            host = location.removeprefix(prefix).rstrip("/")
            if not _HOSTPORT_RE.match(host):
                raise BundleError(
                    f"registry location {location!r} must be {scheme}://host[:port] with no path",
                    hint="the repository is given separately",
                )
            return StoreLocation(kind="registry", host=host, scheme=scheme)
    if location.startswith(("/", ".", "~")) or "/" in location:
        return StoreLocation(kind="layout", path=Path(location).expanduser())
    if _HOSTPORT_RE.match(location) and (
        "." in location or ":" in location or location == "localhost"
    ):
        return StoreLocation(kind="registry", host=location)
    return StoreLocation(kind="layout", path=Path(location))


def open_store(location: str, *, insecure: bool | None = None) -> BundleStore:
    """Open the store a location names (see `parse_location`).

    `insecure=None` uses plain HTTP for loopback registries only; `True` forces plain HTTP
    (also needed for an `http://` location that is not loopback); `False` forces HTTPS.
    """
    loc = parse_location(location)
    if loc.path is not None:
        from .layout import LayoutStore

        return LayoutStore(loc.path)
    from .registry import RegistryStore

    host = loc.host or ""
    if loc.scheme == "https":
        if insecure:
            raise StoreError(f"{location!r} asks for HTTPS but insecure=True asks for plain HTTP")
        insecure = False
    elif loc.scheme == "http":
        if insecure is False:
            raise StoreError(f"{location!r} asks for plain HTTP but insecure=False forbids it")
        if insecure is None and not is_loopback(host):
            raise StoreError(
                f"refusing plain HTTP to non-loopback registry {host}",
                hint="use https://, or pass insecure=True (--insecure) if you really mean it",
            )
        insecure = True
    return RegistryStore(host, insecure=insecure)


def check_digest(digest: str) -> str:
    """Return `digest` if it is `sha256:<64 hex>`; digests become URLs and file names."""
    if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
        raise BundleError(f"{digest!r} is not a digest", hint="expected sha256:<64 lowercase hex>")
    return digest


def check_tag(tag: str) -> str:
    """Return `tag` if it follows the OCI tag grammar."""
    if not isinstance(tag, str) or not _TAG_RE.match(tag):
        raise BundleError(
            f"{tag!r} is not a valid tag", hint="use letters, digits, '_', '.', '-' (at most 128)"
        )
    return tag


def check_repository(repository: str) -> str:
    """Return `repository` if it is a valid OCI repository name (lowercase path components)."""
    try:
        parse_bundle_ref(f"h/{repository}@sha256:{'0' * 64}")
    except InvalidBundleRef as exc:
        raise BundleError(
            f"{repository!r} is not a valid repository name",
            hint="use lowercase words of a-z, 0-9, '.', '_', '-' joined by '/', e.g. modelops/sir",
        ) from exc
    return repository


def run_concurrently(fn: Callable[[T], R], items: Iterable[T], concurrency: int) -> list[R]:
    """`fn` over `items` in up to `concurrency` threads (store calls are blocking I/O).

    Results keep the order of `items`. The first failure cancels what has not started yet
    and is raised once the running calls finish.
    """
    items = list(items)
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(items)))) as pool:
        futures: list[Future[R]] = [pool.submit(fn, item) for item in items]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for fut in futures:
            if fut in done and fut.exception() is not None:
                for other in futures:
                    other.cancel()
                raise fut.exception()  # type: ignore[misc]
        return [f.result() for f in futures]
