"""The project folder: finding its root, its `.modelops-bundle/` state folder, safe relative paths,
atomic writes and the inter-process lock its state files share.

Every path the bundle library records is POSIX and relative to the project root; this module is
where an outside path becomes such a path, or is refused with UnsafePath.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import structlog

from modelops_contracts import check_relative_path
from modelops_contracts.errors import InvalidMessage

from .errors import ProjectError, UnsafePath

__all__ = [
    "CACHE_DIR",
    "STATE_DIR",
    "atomic_write_bytes",
    "file_lock",
    "find_or_init_root",
    "find_root",
    "init_project",
    "real_path_in_root",
    "safe_relative",
    "state_dir",
    "to_project_path",
]

log = structlog.get_logger(__name__)

STATE_DIR = ".modelops-bundle"
CACHE_DIR = "cache"
_GITIGNORE = (
    "# Local state of modelops-bundle: caches, locks and push history stay out of git.\n"
    "# registry.yaml is not listed here: commit it.\n"
    f"/{CACHE_DIR}/\n"
    "*.lock\n"
    "*.tmp\n"
    "pushes.json\n"
)


def state_dir(root: Path) -> Path:
    """`<root>/.modelops-bundle`."""
    return root / STATE_DIR


def find_root(start: str | os.PathLike[str] | None = None) -> Path:
    """The nearest folder at or above `start` (default: cwd) holding `.modelops-bundle/`."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / STATE_DIR).is_dir():
            return folder
    raise ProjectError(
        f"no {STATE_DIR}/ folder in {here} or any folder above it",
        hint="run 'modelops-bundle register-model module:Class --path FILE' in the project folder",
    )


def init_project(folder: str | os.PathLike[str]) -> Path:
    """Create `.modelops-bundle/` (and its .gitignore) in `folder`; idempotent. Returns the root."""
    root = Path(folder).resolve()
    state = state_dir(root)
    state.mkdir(exist_ok=True)
    gitignore = state / ".gitignore"
    if not gitignore.exists():  # never overwrite a user's edits
        atomic_write_bytes(gitignore, _GITIGNORE.encode())
        log.info("project.initialized", root=str(root))
    return root


def find_or_init_root(start: str | os.PathLike[str] | None = None) -> Path:
    """The project root above `start`, or a new project created in `start` if there is none."""
    try:
        return find_root(start)
    except ProjectError:
        return init_project(start or Path.cwd())


def safe_relative(path: str, *, what: str = "path") -> str:
    """`path` if it is a safe project-relative POSIX path, else UnsafePath naming it."""
    try:
        return check_relative_path(path, field=what)
    except InvalidMessage as exc:
        raise UnsafePath(f"{what} {exc.message}", hint=exc.hint) from exc


def to_project_path(
    root: Path, path: str | os.PathLike[str], *, base: Path | None = None, what: str = "path"
) -> str:
    """Project-relative POSIX form of `path` (relative paths are taken from `base`, default root).

    Returns "" for the root itself. Refuses, with UnsafePath, a path outside the project or one
    whose folders lead outside it through a symlink. The last component is kept as named, so a
    link inside the project is tracked under the link's name.
    """
    p = Path(os.path.abspath((base or root) / Path(path)))
    try:
        rel = p.relative_to(root)
    except ValueError:
        # `root` is resolved; the caller may have named it through a symlinked folder.
        p = Path(os.path.realpath(p.parent)) / p.name
        try:
            rel = p.relative_to(root)
        except ValueError:
            raise UnsafePath(
                f"{what} {str(path)!r} is outside the project {root}",
                hint="only files inside the project folder can be tracked; copy them in",
            ) from None
    posix = rel.as_posix()
    if posix == ".":
        return ""
    safe_relative(posix, what=what)
    real_path_in_root(root, posix, what=what)
    return posix


def real_path_in_root(root: Path, rel: str, *, what: str = "path") -> Path:
    """The real (symlink-free) path of project-relative `rel`; UnsafePath if it leaves `root`."""
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(root / PurePosixPath(rel)))
    if real != real_root and real_root not in real.parents:
        raise UnsafePath(
            f"{what} {rel!r} resolves outside the project (to {real}) through a symlink",
            hint="replace the link with a copy of its target, or list it in .modelopsignore",
        )
    return real


def atomic_write_bytes(path: Path, data: bytes, *, skip_if_same: bool = True) -> bool:
    """Write `data` to `path` via a temporary file and os.replace: readers see the old or the
    new file, never a torn one. Returns False, touching nothing, if the bytes are already there.

    The temporary file is created with mode 0o666 so the umask applies, as for a normal write.
    """
    if skip_if_same:
        try:
            if path.read_bytes() == data:
                return False
        except FileNotFoundError:
            pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return True


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive fcntl.flock on `path` (created if needed) across processes.

    flock is released by the kernel when the process dies, so a crashed writer never leaves
    the project locked.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
