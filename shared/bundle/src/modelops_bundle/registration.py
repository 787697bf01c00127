"""`register-model`: scan a model, collect its code and data files, hash them, update the registry.

Code files are the model file, the project modules it imports (found by model_scan) and any
`--code` files or folders; data files are the `--data` files and folders. Folders are walked
recursively, honouring the ignore rules. Every path must stay inside the project, also through
symlinks (UnsafePath otherwise).

Registering the same content again leaves registry.yaml byte-for-byte unchanged. When a file
shared with other registered models has changed, their entries take the new digest too, since
the registry (and any bundle built from it) holds one version of each path; the result lists
those models so the user knows their digests moved.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
import structlog

from modelops_contracts import (
    ModelEntry,
    ParameterSpace,
    ParameterSpec,
    Registry,
    TrackedFile,
    parse_entrypoint,
)

from .digest_cache import DigestCache
from .errors import ProjectError, UnsafePath
from .ignore import IgnoreRules, load_ignore_rules
from .model_scan import ModelScan, scan_model
from .project import STATE_DIR, init_project, real_path_in_root, safe_relative, to_project_path
from .registry_file import update_registry

__all__ = ["Registration", "collect_files", "register_model", "walk_files"]

log = structlog.get_logger(__name__)

PathArg = str | os.PathLike[str]


@dataclass(frozen=True)
class Registration:
    """What register_model did, for the CLI's summary."""

    entry: ModelEntry
    previous: ModelEntry | None  # the entry it replaced, if any
    changed: bool  # registry.yaml was rewritten
    hashed: int  # files read and hashed
    cached: int  # files whose digest came from the cache
    also_updated: tuple[str, ...]  # other models whose shared files took new digests
    scan: ModelScan
    warnings: tuple[str, ...]

    @property
    def files(self) -> int:
        return len(self.entry.files)

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.entry.files)


def walk_files(
    root: Path,
    rel_dir: str,
    rules: IgnoreRules,
    *,
    warnings: list[str] | None = None,
    _seen: set[str] | None = None,
) -> Iterator[str]:
    """Project-relative files under `rel_dir` ("" = root), sorted, pruning ignored folders.

    Links are followed only while they stay inside the project (UnsafePath otherwise, unless
    ignored); link cycles are cut. Broken links, sockets, FIFOs and devices are skipped, with a
    line appended to `warnings`.
    """
    warnings = warnings if warnings is not None else []
    seen = _seen if _seen is not None else set()
    real = os.path.realpath(root / rel_dir)
    if real in seen:
        return
    seen.add(real)
    with os.scandir(root / rel_dir) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
        is_dir = entry.is_dir()  # follows links
        if rules.is_ignored(rel, is_dir=is_dir):
            continue
        if entry.is_symlink():
            if not os.path.exists(entry.path):
                warnings.append(f"{rel}: broken symlink, skipped")
                continue
            real_path_in_root(root, rel, what="linked path")
        if is_dir:
            yield from walk_files(root, rel, rules, warnings=warnings, _seen=seen)
        elif entry.is_file():
            yield rel
        else:
            warnings.append(f"{rel}: not a regular file, skipped")


def collect_files(
    root: Path,
    paths: Sequence[PathArg],
    *,
    base: Path | None = None,
    rules: IgnoreRules,
    what: str,
    warnings: list[str],
) -> list[str]:
    """Project-relative files named by `paths`: files as given, folders walked recursively.

    A file named explicitly is tracked even if an ignore pattern matches it (the user asked
    for it); folders honour the ignore rules. `what` ("data", "code") names the option in errors.
    """
    files: dict[str, None] = {}
    for arg in paths:
        rel = to_project_path(root, arg, base=base, what=f"{what} path")
        full = root / rel if rel else root
        if rel == STATE_DIR or rel.startswith(f"{STATE_DIR}/"):
            raise UnsafePath(
                f"{what} path {str(arg)!r} is inside {STATE_DIR}/", hint="track project files only"
            )
        try:
            mode = os.stat(full).st_mode
        except FileNotFoundError:
            raise ProjectError(
                f"{what} path {str(arg)!r} does not exist", hint=f"check --{what}"
            ) from None
        if stat.S_ISDIR(mode):
            found = list(walk_files(root, rel, rules, warnings=warnings))
            if not found:
                warnings.append(f"{what} folder {rel or '.'}/ has no files (after ignores)")
            files.update(dict.fromkeys(found))
        elif stat.S_ISREG(mode):
            files[rel] = None
        else:
            raise ProjectError(f"{what} path {str(arg)!r} is not a regular file or folder")
    return list(files)


def _tracked(rels: Iterable[str], digests: dict[str, tuple[str, int]]) -> list[TrackedFile]:
    out = []
    for rel in sorted(rels):
        safe_relative(rel, what="file")  # names found by a walk: e.g. a backslash in a name
        digest, size = digests[rel]
        try:
            out.append(TrackedFile(path=rel, digest=digest, size=size))
        except ValueError as exc:  # e.g. larger than the 64 GiB a tracked file may be
            raise ProjectError(f"cannot track {rel!r}: {exc}") from exc
    return out


def _refresh_shared(
    registry: Registry, entry: ModelEntry
) -> tuple[dict[str, ModelEntry], list[str]]:
    """Other models' entries with `entry`'s newer digests for shared paths, and their ids."""
    fresh = {f.path: f for f in entry.files}
    models: dict[str, ModelEntry] = {}
    updated = []
    for mid, other in registry.models.items():
        if mid == entry.id:
            continue
        if any(f.path in fresh and fresh[f.path] != f for f in other.files):
            other = msgspec.structs.replace(
                other,
                code=[fresh.get(f.path, f) for f in other.code],
                data=[fresh.get(f.path, f) for f in other.data],
            )
            updated.append(mid)
        models[mid] = other
    return models, updated


def register_model(
    root: PathArg,
    entrypoint: str,
    path: PathArg,
    *,
    data: Sequence[PathArg] = (),
    code: Sequence[PathArg] = (),
    model_id: str | None = None,
    cache: DigestCache | None = None,
    base: PathArg | None = None,
) -> Registration:
    """Register (or re-register) the model `entrypoint` defined in file `path`.

    Relative `path`, `data` and `code` are taken from `base` (default: the project root; the
    CLI passes the cwd). The id defaults to the class name. `cache` defaults to the project's
    persistent digest cache and is saved before returning.

    Raises InvalidEntrypoint (contracts), ModelNotFound, ProjectError and UnsafePath.
    """
    root = Path(root).resolve()
    base_dir = Path(base).resolve() if base is not None else root
    ep = parse_entrypoint(entrypoint)
    if ep.scenario:
        raise ProjectError(
            f"entrypoint {entrypoint!r} names scenario {ep.scenario!r}",
            hint=f"register {ep.target!r}; the scenario is chosen per study",
        )
    init_project(root)
    cache = cache or DigestCache(root)
    rules = load_ignore_rules(root)
    warnings: list[str] = []

    model_rel = to_project_path(root, path, base=base_dir, what="model path")
    scan = scan_model(root, model_rel, ep)
    warnings += scan.warnings
    extra_code = collect_files(
        root, code, base=base_dir, rules=rules, what="code", warnings=warnings
    )
    code_files = sorted({*scan.code, *extra_code})
    data_files = sorted(
        set(collect_files(root, data, base=base_dir, rules=rules, what="data", warnings=warnings))
        - set(code_files)
    )

    hashed_before, cached_before = cache.hashed, cache.cached
    found = cache.digest_many([*code_files, *data_files])
    digests = {rel: (fd.digest, fd.size) for rel, fd in found.items()}
    try:
        entry = ModelEntry(
            id=model_id or ep.cls,
            entrypoint=ep.target,
            path=model_rel,
            code=_tracked(code_files, digests),
            data=_tracked(data_files, digests),
            outputs=list(scan.outputs),
            scenarios=list(scan.scenarios),
            parameters=list(scan.parameters),
            parameter_space=_declared_space(scan.parameter_ranges),
        )
    except ValueError as exc:
        raise ProjectError(
            f"cannot register {entrypoint!r}: {exc}", hint="check --id and the paths"
        ) from exc

    previous: ModelEntry | None = None
    also: list[str] = []

    def change(registry: Registry) -> Registry:
        nonlocal previous, also
        previous = registry.models.get(entry.id)
        others, also = _refresh_shared(registry, entry)
        return Registry(
            version=registry.version, project=registry.project, models={**others, entry.id: entry}
        )

    _, changed = update_registry(root, change)
    cache.save()
    result = Registration(
        entry=entry,
        previous=previous,
        changed=changed,
        hashed=cache.hashed - hashed_before,
        cached=cache.cached - cached_before,
        also_updated=tuple(also),
        scan=scan,
        warnings=tuple(warnings),
    )
    log.info(
        "model.registered",
        model=entry.id,
        digest=entry.digest,
        files=result.files,
        bytes=result.bytes,
        hashed=result.hashed,
        cached=result.cached,
        changed=changed,
        also_updated=also,
    )
    return result


def _declared_space(ranges: dict[str, dict] | None) -> ParameterSpace | None:
    """The model's declared parameter ranges as a ParameterSpace (None if it declares none)."""
    if not ranges:
        return None
    try:
        return ParameterSpace(
            specs=[ParameterSpec(name=name, **spec) for name, spec in ranges.items()]
        )
    except (TypeError, ValueError) as exc:
        raise ProjectError(
            f"the model's declared parameters are not valid ranges: {exc}",
            hint=(
                "declare parameters = {'beta': {'lower': 0.1, 'upper': 0.5, 'kind': 'float'}, ...}"
            ),
        ) from exc
