"""Atomic local file writes: a hidden temporary file beside the target, then a rename.

The temporary file lives in the target's folder so `os.replace` and `os.link` stay on one
filesystem (hence atomic), so a crash leaves either the old object or the new one, never a
torn file. A crash can leave a temporary file behind: its name starts with TMP_PREFIX, which
listings skip and keys refuse.

Durability comes in two grains. A durable write fsyncs the file before the rename and the
folder after it: one object survives a power loss on its own. A batch of writes skips those
fsyncs and ends with one `sync_writes` (syncfs(2) on Linux: one flush for the whole batch,
instead of two fsyncs per file, each waiting on the disk). These functions block: call them
through asyncio.to_thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import secrets
import shutil
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from modelops_runtime.blobstore.keys import TMP_PREFIX

__all__ = [
    "AtomicWriter",
    "copy_file_atomic",
    "fsync_dir",
    "link_bytes_atomic",
    "sync_writes",
    "write_bytes_atomic",
]

CHUNK = 1024 * 1024
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_names = itertools.count()
_token = secrets.token_hex(4)


def _new_token() -> None:
    global _token
    _token = secrets.token_hex(4)


os.register_at_fork(after_in_child=_new_token)  # a forked child must not reuse our names


def _tmp_name(folder: str) -> str:
    """A fresh temporary name in `folder`: per-process token + counter, no syscall per name."""
    return os.path.join(folder, f"{TMP_PREFIX}{_token}-{next(_names)}")


def fsync_dir(folder: Path | str) -> None:
    """Persist a rename in `folder` (its directory entry) across a power loss."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _load_syncfs() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn  # type: ignore[no-any-return]


_syncfs = _load_syncfs()


def sync_writes(root: Path | str, paths: Iterable[str]) -> None:
    """Make non-durable writes of `paths` (files under `root`) survive a power loss.

    Linux: one syncfs(2) on root's filesystem, which also persists the new folders and
    renames. Elsewhere: fsync each file, then each folder that holds one. syncfs flushes
    everything dirty on that filesystem, so on a disk that others fill with writes it can
    take a while; it costs little CPU either way.
    """
    if _syncfs is not None:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if _syncfs(fd) != 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err), str(root))
        finally:
            os.close(fd)
        return
    top = os.fspath(root)
    folders: set[str] = set()
    for path in paths:
        _fsync_path(path)
        folder = os.path.dirname(path)
        while folder.startswith(top) and folder not in folders:  # new parents hold entries too
            folders.add(folder)
            folder = os.path.dirname(folder)
    for folder in sorted(folders, key=len, reverse=True):
        fsync_dir(folder)


def _create_tmp(folder: str) -> tuple[str, int]:
    """Create a new temporary file in `folder` (made if missing); (path, fd open for writing)."""
    for _ in range(3):
        tmp = _tmp_name(folder)
        try:
            return tmp, os.open(tmp, _CREATE, 0o644)
        except FileNotFoundError:
            os.makedirs(folder, exist_ok=True)
        except FileExistsError:
            continue  # a name left by a crashed process with our token: take the next one
    tmp = _tmp_name(folder)
    return tmp, os.open(tmp, _CREATE, 0o644)


def write_bytes_atomic(
    dest: Path | str, data: bytes, *, exclusive: bool = False, durable: bool = True
) -> bool:
    """Write `data` at `dest` atomically; with `exclusive`, only if `dest` is absent.

    Returns False when `exclusive` found something at `dest` (nothing written). Without
    `durable` the caller owes a `sync_writes` before relying on the object after a crash.
    """
    dest = os.fspath(dest)
    folder = os.path.dirname(dest)
    tmp, fd = _create_tmp(folder)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        if exclusive:
            try:
                os.link(tmp, dest)
            except FileExistsError:
                return False
        else:
            os.replace(tmp, dest)
            tmp = ""
    finally:
        if tmp:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    if durable:
        fsync_dir(folder)
    return True


def link_bytes_atomic(dests: list[str], data: bytes) -> list[bool]:
    """`data` at each of `dests` where nothing is yet, written once: one file, one hard link
    per name. Per dest, whether it was written. Not durable: the caller owes a `sync_writes`.

    One inode for many names is the cheap way to store many small objects on a local disk:
    a file of its own costs ext4 ~65 us of CPU per object (inode, block, temporary name),
    a link ~10 us. Every name is a whole object at once (a link of a complete file); a name
    replaced later (a rename onto it) leaves the others as they were.
    """
    if not dests:
        return []
    tmp, fd = _create_tmp(os.path.dirname(dests[0]))
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        return [_link_new(tmp, dest) for dest in dests]
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _link_new(source: str, dest: str) -> bool:
    """Link `source` at `dest` unless something is there (its folder made if missing)."""
    try:
        os.link(source, dest)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        try:
            os.link(source, dest)
        except FileExistsError:
            return False
    except FileExistsError:
        return False
    return True


class AtomicWriter:
    """Write chunks to a temporary file, then `commit()` (replace) or `link()` (only if absent).

    Any exception before commit/link leaves nothing at `dest`: call `abort()` (idempotent).
    Used for streams; whole byte strings go through `write_bytes_atomic`.
    """

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.tmp = dest.parent / f"{TMP_PREFIX}{secrets.token_hex(8)}"
        self._file: BinaryIO | None = None

    def open(self) -> None:
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.tmp, "xb")  # closed by _finish() or abort()

    def write(self, chunk: bytes) -> None:
        assert self._file is not None, "AtomicWriter.open() first"
        self._file.write(chunk)

    def write_from(self, source: BinaryIO) -> None:
        assert self._file is not None, "AtomicWriter.open() first"
        shutil.copyfileobj(source, self._file, CHUNK)

    def _finish(self) -> None:
        assert self._file is not None, "AtomicWriter.open() first"
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None

    def commit(self) -> None:
        """Atomically replace `dest` with what was written (last write wins)."""
        self._finish()
        os.replace(self.tmp, self.dest)
        fsync_dir(self.dest.parent)

    def link(self) -> bool:
        """Atomically create `dest` only if nothing is there; True if this call created it."""
        self._finish()
        try:
            os.link(self.tmp, self.dest)
        except FileExistsError:
            return False
        finally:
            self.tmp.unlink(missing_ok=True)
        fsync_dir(self.dest.parent)
        return True

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()


def copy_file_atomic(source: BinaryIO, dest: Path) -> None:
    """Stream the open binary file `source` to `dest` atomically, in 1 MiB chunks."""
    writer = AtomicWriter(dest)
    try:
        writer.open()
        writer.write_from(source)
        writer.commit()
    finally:
        writer.abort()  # a no-op after commit; removes the temporary file otherwise
