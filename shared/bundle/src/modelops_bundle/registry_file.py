"""`.modelops-bundle/registry.yaml`: deterministic load and save, safe for git.

The file holds no timestamps and no absolute paths; models are sorted by id and file lists by
path, so the same registered content always gives the same bytes. Loading decodes through the
contracts types, so a hand-edited entry with an unsafe path is refused (UnsafePath) and any
other invalid entry is a ProjectError naming the file and the model.

Read-modify-write cycles hold an flock on `.modelops-bundle/registry.lock`, so two processes
registering models at the same time both end up in the file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import structlog
import yaml

from modelops_contracts import ModelEntry, Registry
from modelops_contracts.errors import InvalidMessage

from .errors import ProjectError, UnsafePath
from .project import STATE_DIR, atomic_write_bytes, file_lock

__all__ = [
    "REGISTRY_FILE",
    "dump_registry",
    "load_registry",
    "parse_registry",
    "registry_path",
    "save_registry",
    "update_registry",
]

log = structlog.get_logger(__name__)

REGISTRY_FILE = "registry.yaml"
_LOCK_FILE = "registry.lock"
_HEADER = b"# ModelOps model registry, written by 'modelops-bundle register-model'. Commit it.\n"
# The C loader and dumper are much faster on large registries and give the same result here.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def registry_path(root: Path) -> Path:
    """`<root>/.modelops-bundle/registry.yaml`."""
    return root / STATE_DIR / REGISTRY_FILE


def _canonical(registry: Registry) -> dict[str, Any]:
    """Plain data in a stable order: models by id, code/data by path (field order as declared)."""
    data: dict[str, Any] = msgspec.to_builtins(registry)
    models = {}
    for key in sorted(data["models"]):
        entry = data["models"][key]
        entry["code"] = sorted(entry["code"], key=lambda f: f["path"])
        entry["data"] = sorted(entry["data"], key=lambda f: f["path"])
        models[key] = entry
    data["models"] = models
    return data


def dump_registry(registry: Registry, *, dumper: type = _Dumper) -> bytes:
    """The canonical bytes of `registry`: identical for identical content, on every machine."""
    body = yaml.dump(
        _canonical(registry),
        Dumper=dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=10_000,  # never fold long paths across lines
        line_break="\n",
        encoding="utf-8",
    )
    return _HEADER + body


def _entry_error(source: str, key: object, exc: Exception) -> Exception:
    cause = exc.__cause__ or exc.__context__
    where = f"{source}: model {key!r}"
    if isinstance(cause, InvalidMessage):  # check_relative_path: absolute, '..', backslash, ...
        return UnsafePath(
            f"{where}: {cause.message}",
            hint="tracked paths must be relative to the project root; fix or re-register the model",
        )
    return ProjectError(
        f"{where} is invalid: {exc}",
        hint="fix the entry by hand or re-register the model with 'modelops-bundle register-model'",
    )


def parse_registry(data: bytes, *, source: str = REGISTRY_FILE) -> Registry:
    """Decode registry.yaml bytes; `source` names the file in errors."""
    try:
        raw = yaml.load(data, Loader=_Loader)  # _Loader is a safe loader
    except yaml.YAMLError as exc:
        raise ProjectError(
            f"{source} is not valid YAML: {exc}", hint="fix it or restore it from git"
        ) from exc
    if raw is None:
        return Registry()
    if not isinstance(raw, dict) or not isinstance(raw.get("models", {}), dict):
        raise ProjectError(
            f"{source} must be a mapping with a 'models' mapping",
            hint="restore it from git or delete it and register the models again",
        )
    models: dict[str, ModelEntry] = {}
    for key, entry in (raw.get("models") or {}).items():
        try:
            models[key] = msgspec.convert(entry, ModelEntry)
        except (msgspec.ValidationError, ValueError) as exc:
            raise _entry_error(source, key, exc) from exc
    try:
        top = msgspec.convert({k: v for k, v in raw.items() if k != "models"}, Registry)
        return Registry(version=top.version, project=top.project, models=models)
    except (msgspec.ValidationError, ValueError) as exc:
        raise ProjectError(
            f"{source} is invalid: {exc}", hint="fix it or restore it from git"
        ) from exc


def load_registry(root: Path) -> Registry:
    """The project's registry; an empty one if nothing is registered yet."""
    path = registry_path(root)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Registry()
    return parse_registry(data, source=str(path))


def save_registry(root: Path, registry: Registry) -> bool:
    """Write the registry atomically; returns False (file untouched) if the bytes are unchanged.

    Callers that read, change and write should use update_registry, which holds the lock.
    """
    path = registry_path(root)
    path.parent.mkdir(exist_ok=True)
    return atomic_write_bytes(path, dump_registry(registry))


def update_registry(root: Path, change: Callable[[Registry], Registry]) -> tuple[Registry, bool]:
    """Apply `change` to the registry under the project's registry lock and save the result.

    Returns the new registry and whether registry.yaml changed on disk.
    """
    lock = root / STATE_DIR / _LOCK_FILE
    lock.parent.mkdir(exist_ok=True)
    with file_lock(lock):
        new = change(load_registry(root))
        written = save_registry(root, new)
    log.debug("registry.updated", root=str(root), written=written, models=len(new.models))
    return new, written
