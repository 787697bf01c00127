"""The one async interface every blob store backend implements.

Job specs and task outputs go through it, so the submitter and the runners run unchanged on
S3 (AWS, MinIO, SeaweedFS) and on a local folder (the embedded stack).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

__all__ = ["BlobPut", "BlobStore", "ClosingStore"]


@dataclass(frozen=True, slots=True)
class BlobPut:
    """One object of a `put_batch` stage: `if_absent` writes it only where nothing is yet."""

    key: str
    data: bytes
    content_type: str | None = None
    if_absent: bool = False


@runtime_checkable
class BlobStore(Protocol):
    """Objects addressed by relative POSIX keys under one base URI.

    Methods that read take a key or a full URI of this store (`uri_for(key)`). Writes are
    all-or-nothing: a reader never sees a half-written object. A store holds network
    clients bound to the event loop it is first used in: use it from one loop, and
    `close()` it (or use `async with`).
    """

    uri: str
    """Base URI, e.g. "s3://bucket/prefix" or "file:///abs/dir" (no trailing slash)."""

    def uri_for(self, key: str) -> str:
        """Full URI of `key`; get_* and exists/delete accept it back."""
        ...

    async def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> str:
        """Write `data` at `key` (last write wins, atomically) and return its URI."""
        ...

    async def put_file(self, key: str, path: Path) -> str:
        """Stream the file at `path` to `key` (multipart when large) and return its URI."""
        ...

    async def put_if_absent(
        self, key: str, data: bytes, *, content_type: str | None = None
    ) -> bool:
        """Write `data` only if `key` holds nothing yet; True if this call wrote it."""
        ...

    async def put_batch(self, *stages: Sequence[BlobPut]) -> list[list[bool]]:
        """Write many objects in few round trips; stage by stage, in order.

        Every object of a stage is stored (durably, on file://) before any object of the
        next stage is written, so a later stage may point at an earlier one (outputs, then
        the record naming them). Within a stage there is no order. The result holds, per
        stage and put, whether it was written (False: an `if_absent` put found an object).
        An error stops the batch: earlier objects may be stored, none is half-written.
        Cheaper per object than put_bytes: file:// syncs the disk once per stage, not twice
        per file; S3 sends a stage's puts concurrently. A store whose `links_shared_puts`
        attribute is true stores the `if_absent` puts of a stage that share one bytes object
        as one object under many names (file:// hard links), so many small objects cost
        about one: callers may then give many keys the same bytes.
        """
        ...

    async def get_bytes(self, key_or_uri: str) -> bytes:
        """The object's bytes; BlobNotFound if there is none."""
        ...

    async def get_batch(self, keys_or_uris: Sequence[str]) -> list[bytes | None]:
        """Many objects' bytes in few round trips; None for each one that does not exist."""
        ...

    async def get_file(self, key_or_uri: str, dest: Path) -> None:
        """Stream the object to `dest`, which appears complete or not at all."""
        ...

    async def exists(self, key_or_uri: str) -> bool:
        """Whether an object is stored at that key."""
        ...

    def list(self, prefix: str = "") -> AsyncIterator[str]:
        """Keys starting with `prefix` (a string prefix, as in S3), fetched page by page.

        AWS S3 and file:// yield UTF-8 byte order; SeaweedFS lists folder by folder, so
        callers must not rely on the order across folders.
        """
        ...

    async def delete(self, key_or_uri: str) -> None:
        """Remove the object; deleting a missing key is not an error (S3 semantics)."""
        ...

    async def close(self) -> None:
        """Release network clients; the store must not be used afterwards."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class ClosingStore:
    """Mixin: `async with store:` closes it on exit."""

    async def close(self) -> None:  # pragma: no cover - overridden by every backend
        return None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
