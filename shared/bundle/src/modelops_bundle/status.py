"""`status` and the build's precondition: do the files on disk still match registry.yaml?

Works offline. A file whose size changed is reported modified without reading it; one whose
size matches is checked by digest, through the digest cache, so unchanged files are not read
again. Whether each model's registered version is in the latest pushed bundle comes from the
caller (see pushes.latest_push), as a map of model id to model digest.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

import structlog

from modelops_contracts import ModelEntry, Registry, TrackedFile

from .digest_cache import DigestCache
from .errors import FilesChanged, UnsafePath
from .ignore import load_ignore_rules
from .registration import walk_files
from .registry_file import load_registry

__all__ = [
    "FileState",
    "FileStatus",
    "ModelStatus",
    "PushState",
    "StatusReport",
    "check_unchanged",
    "classify",
    "model_status",
    "observe_files",
]

log = structlog.get_logger(__name__)

FileState = Literal["current", "modified", "missing"]
# pushed: the registered version is in the latest bundle; changed: the bundle has an older
# version; not_pushed: the bundle lacks this model; unknown: no push recorded here.
PushState = Literal["pushed", "changed", "not_pushed", "unknown"]


@dataclass(frozen=True)
class FileStatus:
    """One tracked file: its registered digest and what is on disk now."""

    path: str
    kind: Literal["code", "data"]
    state: FileState
    digest: str
    current_digest: str | None  # None when missing, or modified with a different size


@dataclass(frozen=True)
class ModelStatus:
    """One registered model: its files, untracked files in its data folders, push state."""

    id: str
    entrypoint: str
    digest: str
    files: tuple[FileStatus, ...]
    untracked: tuple[str, ...]
    pushed: PushState
    warnings: tuple[str, ...] = ()

    @property
    def changed(self) -> tuple[FileStatus, ...]:
        return tuple(f for f in self.files if f.state != "current")

    @property
    def clean(self) -> bool:
        """All tracked files match what was registered."""
        return not self.changed


@dataclass(frozen=True)
class StatusReport:
    """Status of every registered model, sorted by id."""

    models: tuple[ModelStatus, ...]

    @property
    def clean(self) -> bool:
        return all(m.clean for m in self.models)


def classify(tracked: TrackedFile, size: int | None, digest: str | None) -> FileState:
    """State of a tracked file given what was observed (size None: the file is missing;
    digest None: not hashed because the size already differs)."""
    if size is None:
        return "missing"
    if size != tracked.size or (digest is not None and digest != tracked.digest):
        return "modified"
    return "current"


def observe_files(
    root: Path, files: Iterable[TrackedFile], cache: DigestCache
) -> dict[str, tuple[FileState, str | None]]:
    """(state, current digest) of each tracked file, reading only files whose size matches."""
    tracked = {f.path: f for f in files}
    sizes: dict[str, int | None] = {}
    for rel in tracked:
        try:
            st = os.stat(root / PurePosixPath(rel))
            sizes[rel] = st.st_size if stat.S_ISREG(st.st_mode) else None
        except (FileNotFoundError, NotADirectoryError):
            sizes[rel] = None
    to_hash = [rel for rel, size in sizes.items() if size is not None and size == tracked[rel].size]
    digests = {rel: fd.digest for rel, fd in cache.digest_many(to_hash).items()}
    return {
        rel: (classify(f, sizes[rel], digests.get(rel)), digests.get(rel))
        for rel, f in tracked.items()
    }


def _push_state(entry: ModelEntry, latest_bundle: Mapping[str, str] | None) -> PushState:
    if latest_bundle is None:
        return "unknown"
    if entry.id not in latest_bundle:
        return "not_pushed"
    return "pushed" if latest_bundle[entry.id] == entry.digest else "changed"


def _untracked(root: Path, entry: ModelEntry, warnings: list[str]) -> tuple[str, ...]:
    """Files in the model's data folders (the top folders holding its data files) that it
    does not track. Only folders are listed, nothing is read."""
    folders = {str(PurePosixPath(f.path).parent) for f in entry.data} - {"."}
    tops = sorted(d for d in folders if not any(d.startswith(f"{o}/") for o in folders))
    tracked = {f.path for f in entry.files}
    rules = load_ignore_rules(root)
    found: set[str] = set()
    for top in tops:
        if not (root / top).is_dir():
            continue
        try:
            found.update(walk_files(root, top, rules, warnings=warnings))
        except UnsafePath as exc:
            warnings.append(str(exc))
    return tuple(sorted(found - tracked))


def model_status(
    root: str | os.PathLike[str],
    *,
    cache: DigestCache | None = None,
    latest_bundle: Mapping[str, str] | None = None,
    registry: Registry | None = None,
    untracked: bool = True,
) -> StatusReport:
    """Status of every registered model (registry read from `root` unless given).

    `latest_bundle` maps model id to model digest for the latest pushed bundle (None: no push
    known). `cache` defaults to the project's persistent digest cache and is saved afterwards.
    """
    root = Path(root).resolve()
    registry = registry if registry is not None else load_registry(root)
    cache = cache or DigestCache(root)
    observed = observe_files(root, registry.files().values(), cache)
    cache.save()
    models = []
    for mid in sorted(registry.models):
        entry = registry.models[mid]
        warnings: list[str] = []
        files = tuple(
            FileStatus(
                path=f.path,
                kind=kind,
                state=observed[f.path][0],
                digest=f.digest,
                current_digest=observed[f.path][1],
            )
            for kind, group in (("code", entry.code), ("data", entry.data))
            for f in group
        )
        models.append(
            ModelStatus(
                id=mid,
                entrypoint=entry.entrypoint,
                digest=entry.digest,
                files=files,
                untracked=_untracked(root, entry, warnings) if untracked else (),
                pushed=_push_state(entry, latest_bundle),
                warnings=tuple(warnings),
            )
        )
    report = StatusReport(models=tuple(models))
    log.debug("status.checked", models=len(models), clean=report.clean)
    return report


def check_unchanged(
    root: str | os.PathLike[str], registry: Registry, cache: DigestCache | None = None
) -> None:
    """Raise FilesChanged listing (path, state) of every tracked file that no longer matches
    registry.yaml; the build refuses to bundle content other than what was registered."""
    root = Path(root).resolve()
    cache = cache or DigestCache(root)
    observed = observe_files(root, registry.files().values(), cache)
    cache.save()
    changed = [(rel, state) for rel, (state, _) in sorted(observed.items()) if state != "current"]
    if not changed:
        return
    owners = sorted(
        mid for mid, e in registry.models.items() if any(f.path in dict(changed) for f in e.files)
    )
    listing = ", ".join(f"{rel} ({state})" for rel, state in changed[:5])
    more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
    raise FilesChanged(
        f"{len(changed)} tracked file(s) changed since registration: {listing}{more}",
        files=changed,
        hint=f"re-register model(s) {', '.join(owners)} with 'modelops-bundle register-model', "
        "or restore the files",
    )
