"""Atomic local file writes: a hidden temporary file beside the target, then a rename.

The temporary file lives in the target's folder so `os.replace` and `os.link` stay on one
filesystem (hence atomic); it is fsynced before the rename and the folder after it, so a
crash leaves either the old object or the new one, never a torn file. A crash can leave a
temporary file behind: its name starts with TMP_PREFIX, which listings skip and keys refuse.
These functions block: call them through asyncio.to_thread.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from modelops_runtime.blobstore.keys import TMP_PREFIX

__all__ = ["AtomicWriter", "copy_file_atomic", "fsync_dir", "write_bytes_atomic"]

CHUNK = 1024 * 1024


def fsync_dir(folder: Path) -> None:
    """Persist a rename in `folder` (its directory entry) across a power loss."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AtomicWriter:
    """Write chunks to a temporary file, then `commit()` (replace) or `link()` (only if absent).

    Any exception before commit/link leaves nothing at `dest`: call `abort()` (idempotent).
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


def _write(dest: Path, fill: Callable[[AtomicWriter], None], *, exclusive: bool) -> bool:
    writer = AtomicWriter(dest)
    try:
        writer.open()
        fill(writer)
        if exclusive:
            return writer.link()
        writer.commit()
        return True
    finally:
        writer.abort()  # a no-op after commit/link; removes the temporary file otherwise


def write_bytes_atomic(dest: Path, data: bytes, *, exclusive: bool = False) -> bool:
    """Write `data` at `dest` atomically; with `exclusive`, only if `dest` is absent."""
    return _write(dest, lambda writer: writer.write(data), exclusive=exclusive)


def copy_file_atomic(source: BinaryIO, dest: Path) -> None:
    """Stream the open binary file `source` to `dest` atomically, in 1 MiB chunks."""
    _write(dest, lambda writer: writer.write_from(source), exclusive=False)
