"""The bundle cache on disk: `cache_dir/<manifest hex>/`, built in a staging folder, then renamed.

A tree is complete when it holds a valid MARKER_FILENAME; it only ever appears by one atomic
rename of a fully verified staging folder, under a per-bundle flock, so concurrent processes on
one host share one copy and a failure leaves nothing behind (no tree, no staging, no lock file).

Power loss without fsync. The cache is a copy of content-addressed blobs, so it needs to be
right, not to survive: instead of fsyncing every file (on a 200 MiB bundle that alone nearly
doubled a pull), the marker records the kernel's boot id. Page-cache data outlives any process
crash; only a kernel crash or power loss can lose unsynced writes, and either means a new boot
id. A tree whose marker names another boot is distrusted and pulled again. Where there is no
boot id (not Linux), every file and folder is fsynced instead and the marker names no boot.
"""

from __future__ import annotations

import contextlib
import functools
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

__all__ = [
    "Staging",
    "bundle_lock",
    "complete_tree",
    "current_boot_id",
    "materialize",
    "staging",
    "unsynced_boot_id",
]

log = structlog.get_logger(__name__)

_READ_ONLY = 0o444  # a model writing to its own data file would corrupt the shared copy
BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
_BOOT_PREFIX = "boot "


def _hex(digest: str) -> str:
    return digest.removeprefix("sha256:")


@functools.cache
def current_boot_id() -> str | None:
    """This kernel's boot id (new at every boot; shared by containers on one node), or None."""
    try:
        return BOOT_ID_FILE.read_text().strip() or None
    except OSError:
        return None


def unsynced_boot_id() -> str | None:
    """The boot id under which the cache writes without fsync, or None: fsync everything."""
    return current_boot_id()


def _distrust(tree: Path, digest: str) -> str | None:
    """Why the tree cannot be used as bundle `digest`, or None when its marker is valid."""
    try:
        lines = (tree / MARKER_FILENAME).read_text().splitlines()
    except FileNotFoundError:
        return "no completion marker"
    except (OSError, UnicodeDecodeError) as exc:
        return f"unreadable completion marker ({exc})"
    if not lines or lines[0] != digest:
        return "completion marker names another bundle or is truncated"
    boots = [line.removeprefix(_BOOT_PREFIX) for line in lines[1:] if line.startswith(_BOOT_PREFIX)]
    if boots and boots[0] != current_boot_id():
        return "written without fsync before the last reboot"
    return None


def complete_tree(cache_dir: Path, digest: str) -> Path | None:
    """The cached tree of bundle `digest` if it is complete and trusted, else None. No lock."""
    tree = cache_dir / _hex(digest)
    return tree if _distrust(tree, digest) is None else None


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
    if tree.exists() and (reason := _distrust(tree, digest)) is not None:
        log.warning("bundle.cache_distrusted_removed", path=str(tree), reason=reason)
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

    Every blob must already be verified in `stage.blobs` (written with fsync unless
    `unsynced_boot_id()` is set, the same rule this function follows). Returns `cache_dir/<hex>`.
    """
    boot = unsynced_boot_id()
    durable = boot is None
    placed: dict[str, Path] = {}
    folders = {stage.tree}
    for f in index.files:
        dest = _dest(stage.tree, f.path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        folders.add(dest.parent)
        if f.digest in placed:  # same content at two paths: copy, never link (files are separate)
            shutil.copyfile(placed[f.digest], dest)
            if durable:
                _fsync_file(dest)
        else:
            os.replace(stage.blob(f.digest), dest)
            placed[f.digest] = dest
        os.chmod(dest, _READ_ONLY)
    atomic_write_bytes(stage.tree / INDEX_FILENAME, config_bytes, mode=_READ_ONLY, durable=durable)
    marker = f"{digest}\n" + ("" if durable else f"{_BOOT_PREFIX}{boot}\n")
    atomic_write_bytes(
        stage.tree / MARKER_FILENAME, marker.encode(), mode=_READ_ONLY, durable=durable
    )
    if durable:
        for folder in folders:
            fsync_dir(folder)
    final = cache_dir / _hex(digest)
    os.rename(stage.tree, final)
    if durable:
        fsync_dir(cache_dir)
    return final
