"""The file:// backend: one folder, one file per key, for the embedded stack and tests.

Writes go through `_atomic` (temporary file + rename), so readers never see a torn object
and a crash leaves no partial one. A single put fsyncs its file and folder; `put_batch`
writes a whole stage, then syncs the disk once. Every blocking call runs in
asyncio.to_thread, one hop per call (one per batch, too).
Limits callers should know: key "a" and key "a/b" cannot both exist (a path is a file or a
folder: BlobConflict), `content_type` is not stored, and deleting leaves empty folders
behind (removing them would race with a concurrent put into the same folder).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import errno
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from modelops_runtime.blobstore._atomic import (
    copy_file_atomic,
    link_bytes_atomic,
    sync_writes,
    write_bytes_atomic,
)
from modelops_runtime.blobstore.base import BlobPut, ClosingStore
from modelops_runtime.blobstore.errors import BlobConflict, BlobNotFound, BlobStoreError
from modelops_runtime.blobstore.keys import (
    TMP_PREFIX,
    BlobLocation,
    join_uri,
    key_of,
    validate_prefix,
)

__all__ = ["FileBlobStore"]

_NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS}

_Planned = tuple[str, str, bytes, bool]  # path, URI, data, if_absent


class FileBlobStore(ClosingStore):
    """A blob store in a local folder, addressed as file:///abs/dir."""

    links_shared_puts = True  # see BlobStore.put_batch

    def __init__(self, location: BlobLocation) -> None:
        if location.scheme != "file":
            raise ValueError(f"FileBlobStore needs a file:// location, got {location.uri}")
        self.uri = location.uri
        self.root = Path(location.root)
        self._root = os.fspath(self.root)

    def __repr__(self) -> str:
        return f"FileBlobStore({self.uri!r})"

    def uri_for(self, key: str) -> str:
        return join_uri(self.uri, key)

    def _path(self, key_or_uri: str) -> tuple[str, str]:
        """(file path, URI) of a key or URI of this store; the key is checked once."""
        key = key_of(self.uri, key_or_uri)
        return f"{self._root}/{key}", f"{self.uri}/{key}"

    async def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> str:
        path, uri = self._path(key)
        await asyncio.to_thread(self._write_bytes, path, uri, bytes(data), False)
        return uri

    async def put_if_absent(
        self, key: str, data: bytes, *, content_type: str | None = None
    ) -> bool:
        # os.link of a complete temporary file fails if the name exists: atomic create-if-absent
        # without a lock, and the object appears whole or not at all.
        path, uri = self._path(key)
        return await asyncio.to_thread(self._write_bytes, path, uri, bytes(data), True)

    async def put_batch(self, *stages: Sequence[BlobPut]) -> builtins.list[builtins.list[bool]]:
        # every key is checked before anything is written: a bad key fails the batch untouched
        plan = [[(*self._path(p.key), bytes(p.data), p.if_absent) for p in s] for s in stages]
        if not any(plan):
            return [[] for _ in plan]
        return await asyncio.to_thread(self._put_stages, plan)

    async def get_batch(self, keys_or_uris: Sequence[str]) -> builtins.list[bytes | None]:
        paths = [self._path(k) for k in keys_or_uris]
        if not paths:
            return []
        return await asyncio.to_thread(self._read_many, paths)

    async def put_file(self, key: str, path: Path) -> str:
        dest, uri = self._path(key)
        source = await asyncio.to_thread(open, path, "rb")  # a missing source: FileNotFoundError
        try:
            await asyncio.to_thread(self._copy_in, source, Path(dest), uri)
        finally:
            source.close()
        return uri

    async def get_bytes(self, key_or_uri: str) -> bytes:
        path, uri = self._path(key_or_uri)
        return await asyncio.to_thread(self._read_bytes, path, uri)

    async def get_file(self, key_or_uri: str, dest: Path) -> None:
        path, uri = self._path(key_or_uri)
        source = await asyncio.to_thread(self._open_blob, path, uri)
        try:
            # errors writing `dest` are the caller's own path: they stay plain OSErrors
            await asyncio.to_thread(copy_file_atomic, source, Path(dest))
        finally:
            source.close()

    async def exists(self, key_or_uri: str) -> bool:
        path, _ = self._path(key_or_uri)
        return await asyncio.to_thread(os.path.isfile, path)

    async def list(self, prefix: str = "") -> AsyncIterator[str]:
        keys = await asyncio.to_thread(self._scan, validate_prefix(prefix))
        for key in keys:
            yield key

    async def delete(self, key_or_uri: str) -> None:
        path, uri = self._path(key_or_uri)
        await asyncio.to_thread(self._unlink, path, uri)

    async def close(self) -> None:
        return None

    # -- blocking helpers, run in a thread ------------------------------------------------

    def _write_bytes(
        self, path: str, uri: str, data: bytes, exclusive: bool, durable: bool = True
    ) -> bool:
        with _write_errors(uri, self.root, exclusive=exclusive):
            written = write_bytes_atomic(path, data, exclusive=exclusive, durable=durable)
            if not written and os.path.isdir(path):
                raise IsADirectoryError(errno.EISDIR, "is a folder of other keys", path)
            return written

    def _put_stages(
        self, plan: builtins.list[builtins.list[_Planned]]
    ) -> builtins.list[builtins.list[bool]]:
        results: builtins.list[builtins.list[bool]] = []
        for stage in plan:
            written = self._write_stage(stage)
            if stage:
                # an object another writer linked but did not sync yet is synced here too
                with _write_errors(self.uri, self.root, exclusive=False):
                    sync_writes(self._root, [path for path, *_ in stage])
            results.append(written)
        return results

    def _write_stage(self, stage: builtins.list[_Planned]) -> builtins.list[bool]:
        """Write one stage, not durably. `if_absent` puts that share one bytes object (the
        same bytes under many keys) are one file with a hard link per key."""
        shared: dict[int, builtins.list[int]] = {}
        for i, (_, _, data, exclusive) in enumerate(stage):
            if exclusive:
                shared.setdefault(id(data), []).append(i)
        written: builtins.list[bool | None] = [None] * len(stage)
        for group in shared.values():
            if len(group) > 1:
                for i, ok in zip(group, self._link_shared(stage, group), strict=True):
                    written[i] = ok
        for i, (path, uri, data, exclusive) in enumerate(stage):
            if written[i] is None:  # on its own, or its group could not be linked
                written[i] = self._write_bytes(path, uri, data, exclusive, durable=False)
        return [bool(w) for w in written]

    def _link_shared(
        self, stage: builtins.list[_Planned], group: builtins.list[int]
    ) -> builtins.list[bool | None]:
        """One file linked at every key of `group`; None for each key to write on its own."""
        paths = [stage[i][0] for i in group]
        try:
            linked: builtins.list[bool | None] = list(link_bytes_atomic(paths, stage[group[0]][2]))
        except OSError:  # a key in conflict, say: each key alone gets its own error
            return [None] * len(group)
        for n, (i, ok) in enumerate(zip(group, linked, strict=True)):
            if not ok and os.path.isdir(stage[i][0]):
                linked[n] = None  # a folder of other keys there: _write_bytes says so
        return linked

    def _read_many(self, paths: builtins.list[tuple[str, str]]) -> builtins.list[bytes | None]:
        found: builtins.list[bytes | None] = []
        for path, uri in paths:
            try:
                found.append(self._read_bytes(path, uri))
            except BlobNotFound:
                found.append(None)
        return found

    def _copy_in(self, source: BinaryIO, dest: Path, uri: str) -> None:
        with _write_errors(uri, self.root, exclusive=False):
            copy_file_atomic(source, dest)

    def _open_blob(self, path: str, uri: str) -> BinaryIO:
        with _read_errors(uri):
            return open(path, "rb")  # the caller closes it; a folder: IsADirectoryError

    def _read_bytes(self, path: str, uri: str) -> bytes:
        with self._open_blob(path, uri) as source, _read_errors(uri):
            return source.read()

    def _scan(self, prefix: str) -> builtins.list[str]:  # `list` is our method here
        # Walk only the folder the prefix names (its part before the last '/'), then filter
        # by string prefix, as S3 does for "jobs/j" matching "jobs/j1/..." and "jobs/j2".
        folder = self.root / prefix.rpartition("/")[0]
        keys: builtins.list[str] = []
        for dirpath, dirnames, filenames in os.walk(folder, onerror=_raise):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            base = "" if rel == "." else f"{rel}/"
            # descend only where keys can start with the prefix ("results/ab/t" skips
            # every other task's folder in results/ab/)
            dirnames[:] = [
                d
                for d in dirnames
                if not d.startswith(TMP_PREFIX)
                and (f"{base}{d}/".startswith(prefix) or prefix.startswith(f"{base}{d}/"))
            ]
            for name in filenames:
                if name.startswith(TMP_PREFIX):
                    continue  # a write in flight, or left by a crash: not an object
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        keys.sort()  # code-point order equals the UTF-8 byte order S3 lists in
        return keys

    def _unlink(self, path: str, uri: str) -> None:
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return  # nothing stored at that key: deleting is idempotent, as on S3
        except OSError as exc:
            raise BlobStoreError(f"cannot delete {uri}: {exc.strerror}") from exc


def _raise(exc: OSError) -> None:
    if not isinstance(exc, FileNotFoundError | NotADirectoryError):
        raise exc  # a missing folder lists as empty; anything else (permissions) is an error


@contextlib.contextmanager
def _read_errors(uri: str) -> Iterator[None]:
    try:
        yield
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
        raise BlobNotFound(uri) from exc
    except OSError as exc:
        raise BlobStoreError(
            f"cannot read {uri}: {exc.strerror}", hint="check the folder's permissions"
        ) from exc


@contextlib.contextmanager
def _write_errors(uri: str, root: Path, *, exclusive: bool) -> Iterator[None]:
    try:
        yield
    except (NotADirectoryError, IsADirectoryError, FileExistsError) as exc:
        # FileExistsError here comes from mkdir: a parent of the key is an existing object
        raise BlobConflict(
            f"cannot write {uri}: a key and a folder of other keys would share a path",
            hint="on file:// stores, key 'a' and key 'a/b' cannot both exist",
        ) from exc
    except OSError as exc:
        if exclusive and exc.errno in _NO_LINKS:
            raise BlobStoreError(
                f"cannot write {uri} exclusively: the filesystem at {root} has no hard links",
                hint="put the file:// store on a local POSIX filesystem",
            ) from exc
        raise BlobStoreError(
            f"cannot write {uri}: {exc.strerror or exc}",
            hint=f"check permissions and free space under {root}",
        ) from exc
