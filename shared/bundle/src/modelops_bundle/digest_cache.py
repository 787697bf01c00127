"""A digest cache so a file is read once at registration, not again by status or build.

An entry is keyed on the file's project-relative path and its stat signature (size, mtime_ns,
ctime_ns, inode). ctime is in the key as well because tools such as `cp -p` or `touch -d` can
put back an old mtime after changing the content, but nothing can set ctime. The cache lives
in `.modelops-bundle/cache/digests.json`, never in registry.yaml: it is machine-local state.

Racy entries: timestamps are coarse (ext4 ~4 ms, FAT 2 s), so a file rewritten just after it
was hashed can keep the same signature. An entry is therefore only trusted if the file's mtime
was at least RACY_NS older than the moment it was hashed; a fresher file is hashed again, which
is slower but never wrong (git's "racy clean" rule, with a wall-clock margin).

Concurrency: writes go through a temporary file and os.replace, merged with what is on disk
just before, so concurrent processes never corrupt the file; one of them may lose the other's
new entries (the last writer wins), which only costs a re-hash later.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import msgspec
import structlog

from . import hashing
from .errors import ProjectError
from .project import CACHE_DIR, STATE_DIR, atomic_write_bytes

__all__ = ["RACY_NS", "DigestCache", "FileDigest"]

log = structlog.get_logger(__name__)

RACY_NS = 2_000_000_000
_VERSION = 1
_FILE = "digests.json"


class _Entry(msgspec.Struct, frozen=True, array_like=True):
    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int
    digest: str
    hashed_at_ns: int


class _CacheFile(msgspec.Struct, frozen=True):
    version: int
    entries: dict[str, _Entry]


_encoder = msgspec.json.Encoder(order="sorted")
_decoder = msgspec.json.Decoder(_CacheFile)


@dataclass(frozen=True, slots=True)
class FileDigest:
    """Digest and size of one file, and whether they came from the cache."""

    digest: str
    size: int
    cached: bool


def _signature(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _hash(root: Path, rel: str) -> tuple[FileDigest, _Entry | None]:
    """Hash project file `rel`; also return a cache entry unless it changed while being read."""
    path = root / PurePosixPath(rel)
    try:
        # O_NONBLOCK: opening a FIFO must not hang waiting for a writer (no effect on files).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ProjectError(
            f"cannot read {rel!r}: {exc.strerror}",
            hint="check that the file exists and is readable",
        ) from exc
    with open(fd, "rb", buffering=0) as fh:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise ProjectError(
                f"{rel!r} is not a regular file",
                hint="track only regular files (not FIFOs, devices)",
            )
        hashed_at = time.time_ns()
        digest, size = hashing.hash_open_file(fh)
        after = os.fstat(fd)
    entry = None
    if _signature(before) == _signature(after) and size == before.st_size:
        entry = _Entry(
            size, before.st_mtime_ns, before.st_ctime_ns, before.st_ino, digest, hashed_at
        )
    return FileDigest(digest, size, cached=False), entry


class DigestCache:
    """Digests of a project's files by relative path, persisted under `.modelops-bundle/cache/`.

    `DigestCache(root)` loads the persisted cache; `DigestCache(root, persist=False)` keeps it in
    memory only. Not thread-safe: use one per thread (digest_many parallelises internally).
    `hashed` and `cached` count how each lookup was answered since the cache was created.
    """

    def __init__(self, root: str | os.PathLike[str], *, persist: bool = True) -> None:
        self.root = Path(root).resolve()
        self.path: Path | None = self.root / STATE_DIR / CACHE_DIR / _FILE if persist else None
        self._entries: dict[str, _Entry] = self._read() if self.path else {}
        self._dirty: dict[str, _Entry] = {}
        self.hashed = 0
        self.cached = 0

    def _read(self) -> dict[str, _Entry]:
        assert self.path is not None
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            parsed = _decoder.decode(data)
        except msgspec.DecodeError as exc:
            # Only a cache: rebuild it rather than fail the command. Logged, never silent.
            log.warning("digest_cache.unreadable", path=str(self.path), error=str(exc))
            return {}
        if parsed.version != _VERSION:
            log.info("digest_cache.version_skipped", path=str(self.path), version=parsed.version)
            return {}
        return dict(parsed.entries)

    def lookup(self, rel: str) -> FileDigest | None:
        """The cached digest of `rel` if its stat signature still matches, without reading it."""
        entry = self._entries.get(rel)
        if entry is None:
            return None
        try:
            st = os.stat(self.root / PurePosixPath(rel))
        except FileNotFoundError:
            return None
        if _signature(st) != (entry.size, entry.mtime_ns, entry.ctime_ns, entry.ino):
            return None
        if entry.hashed_at_ns - entry.mtime_ns < RACY_NS:
            return None
        return FileDigest(entry.digest, entry.size, cached=True)

    def digest(self, rel: str) -> FileDigest:
        """Digest and size of project file `rel`, from the cache or by hashing it."""
        return self.digest_many([rel])[rel]

    def digest_many(
        self, rels: Iterable[str], *, workers: int | None = None
    ) -> dict[str, FileDigest]:
        """Digests of many project files; the uncached ones are hashed on a few threads
        (hashlib releases the GIL, so two cores hash two files at once)."""
        out: dict[str, FileDigest] = {}
        misses: list[str] = []
        for rel in dict.fromkeys(rels):
            hit = self.lookup(rel)
            if hit is None:
                misses.append(rel)
            else:
                out[rel] = hit
        self.cached += len(out)
        if misses:
            n = workers or min(4, os.cpu_count() or 1, len(misses))
            if n <= 1:
                results = [_hash(self.root, rel) for rel in misses]
            else:
                with ThreadPoolExecutor(max_workers=n, thread_name_prefix="hash") as pool:
                    results = list(pool.map(lambda rel: _hash(self.root, rel), misses))
            for rel, (fd, entry) in zip(misses, results, strict=True):
                out[rel] = fd
                if entry is not None:
                    self._entries[rel] = self._dirty[rel] = entry
            self.hashed += len(misses)
        return out

    def save(self) -> bool:
        """Persist new entries (merged over what another process may have written meanwhile).

        Entries whose file is gone are dropped so the cache does not grow forever. Returns
        whether anything was written.
        """
        if self.path is None or not self._dirty:
            return False
        on_disk = self._read()
        merged = {**on_disk, **self._entries, **self._dirty}
        merged = {k: v for k, v in merged.items() if os.path.lexists(self.root / PurePosixPath(k))}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(
            self.path, _encoder.encode(_CacheFile(_VERSION, merged)), skip_if_same=False
        )
        self._entries = merged
        self._dirty = {}
        return True

    def __enter__(self) -> DigestCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.save()
