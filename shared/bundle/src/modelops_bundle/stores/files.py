"""Crash-safe file primitives shared by the layout store and the pull cache.

Content reaches its final name only by `os.replace` of a fully written and verified temporary
file in the same folder, so a reader never sees a partial or unverified blob. By default the
file is fsynced first; the pull cache opts out (`durable=False`) because it guards against
power loss differently (see modelops_bundle.materialize).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import IntegrityError

__all__ = ["atomic_write_bytes", "exclusive_lock", "fsync_dir", "write_verified"]


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink inside `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_verified(
    chunks: Iterable[bytes],
    dest: Path,
    *,
    digest: str,
    size: int | None,
    name: str,
    mode: int = 0o644,
    durable: bool = True,
) -> int:
    """Stream `chunks` into `dest` (via a temp file beside it), refusing a digest/size mismatch.

    The sha256 is computed while writing; on a mismatch the temp file is removed and
    IntegrityError names `name` (a path or blob), so nothing unverified ever lands at `dest`.
    `durable` fsyncs the data before the rename. Returns the number of bytes written.
    """
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".part-")
    try:
        os.fchmod(fd, mode)  # mkstemp makes 0600: blobs are content, not secrets
        h = hashlib.sha256()
        written = 0
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                h.update(chunk)
                written += len(chunk)
                if size is not None and written > size:
                    raise IntegrityError(
                        f"{name}: more than the expected {size} bytes received for {digest}",
                        hint="the store serves different content under this digest; re-push it",
                    )
                out.write(chunk)
            out.flush()
            if durable:
                os.fsync(out.fileno())
        actual = "sha256:" + h.hexdigest()
        if actual != digest or (size is not None and written != size):
            raise IntegrityError(
                f"{name}: content has digest {actual} ({written} bytes), expected {digest}"
                + (f" ({size} bytes)" if size is not None else ""),
                hint="the stored blob is corrupt or was replaced; re-push the bundle",
            )
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return written


def atomic_write_bytes(dest: Path, data: bytes, *, mode: int = 0o644, durable: bool = True) -> None:
    """Write `data` to `dest` atomically (temp file + fsync unless not `durable` + rename)."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".part-")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            if durable:
                os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def exclusive_lock(path: Path, *, remove: bool = False) -> Iterator[None]:
    """Hold an exclusive `flock` on `path` (created if needed) across processes.

    With `remove=True` the lock file is unlinked before release, so it leaves nothing behind;
    a waiter that then wakes on the unlinked file sees the inode changed and retries.
    """
    while True:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(path)
            except FileNotFoundError:
                current = None
            if current is not None and current.st_ino == os.fstat(fd).st_ino:
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the holder before us removed it: lock the new file instead
    try:
        yield
    finally:
        try:
            if remove:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        finally:
            os.close(fd)
