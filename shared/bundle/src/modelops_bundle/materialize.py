"""The bundle cache on disk: `cache_dir/<manifest hex>/`, built in a staging folder, then renamed.

A tree is complete when it holds MARKER_FILENAME; it only ever appears by one atomic rename
of a fully verified staging folder, under a per-bundle flock, so concurrent processes on one
host share one copy and a failure leaves nothing behind (no tree, no staging, no lock file).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import structlog

from .errors import UnsafePath
from .oci import INDEX_FILENAME, MARKER_FILENAME, BundleIndex
from .stores.files import atomic_write_bytes, exclusive_lock, fsync_dir

__all__ = ["Staging", "bundle_lock", "complete_tree", "materialize", "staging"]

log = structlog.get_logger(__name__)

_READ_ONLY = 0o444  # a model writing to its own data file would corrupt the shared copy


def _hex(digest: str) -> str:
    return digest.removeprefix("sha256:")


def complete_tree(cache_dir: Path, digest: str) -> Path | None:
    """The cached tree of bundle `digest` if it is complete, else None. No lock needed."""
    tree = cache_dir / _hex(digest)
    return tree if (tree / MARKER_FILENAME).is_file() else None


@contextlib.contextmanager
def bundle_lock(cache_dir: Path, digest: str) -> Iterator[None]:
    """Exclusive per-bundle lock across processes; the lock file is removed on release."""
    with exclusive_lock(cache_dir / f"{_hex(digest)}.lock", remove=True):
        yield


@dataclass(frozen=True)
class Staging:
    """A private folder inside the cache: `blobs/` for verified downloads, `tree/` to build."""

    root: Path

    @property
    def blobs(self) -> Path:
        return self.root / "blobs"

    @property
    def tree(self) -> Path:
        return self.root / "tree"

    def blob(self, digest: str) -> Path:
        return self.blobs / _hex(digest)


@contextlib.contextmanager
def staging(cache_dir: Path, digest: str) -> Iterator[Staging]:
    """A fresh staging folder, always removed on exit (a built tree has been renamed away).

    Call under `bundle_lock`: it also clears staging folders a killed process left for this
    bundle, and an incomplete tree.
    """
    prefix = f".tmp-{_hex(digest)}-"
    for stale in cache_dir.glob(prefix + "*"):
        log.info("bundle.cache_stale_removed", path=str(stale))
        shutil.rmtree(stale, ignore_errors=True)
    tree = cache_dir / _hex(digest)
    if tree.exists() and not (tree / MARKER_FILENAME).is_file():
        log.warning("bundle.cache_incomplete_removed", path=str(tree))
        shutil.rmtree(tree)
    stage = Staging(cache_dir / f"{prefix}{secrets.token_hex(4)}")
    stage.blobs.mkdir(parents=True)
    stage.tree.mkdir()
    try:
        yield stage
    finally:
        shutil.rmtree(stage.root, ignore_errors=True)


def _dest(tree: Path, rel: str) -> Path:
    """Where `rel` goes in `tree`; UnsafePath if it would land outside (belt and braces)."""
    dest = tree.joinpath(*PurePosixPath(rel).parts)
    real_tree = tree.resolve()
    real_parent = dest.parent.resolve()
    if real_parent != real_tree and real_tree not in real_parent.parents:
        raise UnsafePath(
            f"bundle path {rel!r} resolves outside the bundle folder", hint="do not use it"
        )
    return dest


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def materialize(
    stage: Staging, index: BundleIndex, config_bytes: bytes, *, cache_dir: Path, digest: str
) -> Path:
    """Lay verified blobs out as the bundle's files, add the index and marker, rename into place.

    Every blob must already be verified in `stage.blobs`. Returns `cache_dir/<hex>`.
    """
    placed: dict[str, Path] = {}
    folders = {stage.tree}
    for f in index.files:
        dest = _dest(stage.tree, f.path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        folders.add(dest.parent)
        if f.digest in placed:  # same content at two paths: copy, never link (files are separate)
            shutil.copyfile(placed[f.digest], dest)
            _fsync_file(dest)
        else:
            os.replace(stage.blob(f.digest), dest)
            placed[f.digest] = dest
        os.chmod(dest, _READ_ONLY)
    atomic_write_bytes(stage.tree / INDEX_FILENAME, config_bytes, mode=_READ_ONLY)
    atomic_write_bytes(stage.tree / MARKER_FILENAME, f"{digest}\n".encode(), mode=_READ_ONLY)
    for folder in folders:
        fsync_dir(folder)
    final = cache_dir / _hex(digest)
    os.rename(stage.tree, final)
    fsync_dir(cache_dir)
    return final
