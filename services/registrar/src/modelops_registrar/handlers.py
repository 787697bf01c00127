"""Registrar decisions: RegisterModel in, ModelRegistered events out. No I/O of its own.

The project's registry lives in one KV entry (key = project) and is changed only by
compare-and-set on the revision read, so two registrations racing on one project both land:
the loser re-reads and re-applies its model. A redelivered command whose model is already
there changes nothing and answers with the same event ids, which JetStream deduplicates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

import msgspec
import structlog

from modelops_contracts import (
    ModelEntry,
    ModelRegistered,
    RegisterModel,
    Registry,
    parse_entrypoint,
)

from .errors import RegistryConflict, Rejected, Transient

__all__ = [
    "MAX_FILES",
    "SOURCE",
    "ModelsStore",
    "Versioned",
    "check_project",
    "check_register_model",
    "merge_model",
    "on_register_model",
]

log = structlog.get_logger(__name__)

SOURCE = "modelops.registrar"
MAX_FILES = 100_000  # a model tracking more files than this is a mistake (a whole disk?)
# A KV key that is also a sane name: tokens of [A-Za-z0-9_=-] joined by '.' or '/'.
_PROJECT_RE = re.compile(r"^[A-Za-z0-9_=-]+(?:[./][A-Za-z0-9_=-]+)*\Z")


@dataclass(frozen=True)
class Versioned:
    """A project's registry as stored, with the KV revision it was read at."""

    registry: Registry
    revision: int


class ModelsStore(Protocol):
    """The model registry bucket (KV_MODELS), one entry per project."""

    async def get(self, project: str) -> Versioned | None:
        """The project's registry, or None if it has none. Transient if unreachable."""
        ...

    async def create(self, project: str, registry: Registry) -> int:
        """Store the first registry of a project; RegistryConflict if one appeared meanwhile."""
        ...

    async def update(self, project: str, registry: Registry, *, revision: int) -> int:
        """Replace the registry read at `revision`; RegistryConflict if it moved on."""
        ...


def check_project(project: str, *, field: str = "project") -> str:
    """`project` if it can be a KV key and a subject token sequence, else Rejected."""
    if len(project) > 128 or not _PROJECT_RE.match(project):
        raise Rejected(
            f"project name {project!r} is not usable as a registry key",
            field=field,
            hint="use letters, digits, '_', '-', '=' in parts joined by '.' or '/' (≤ 128 chars)",
        )
    return project


def check_register_model(cmd: RegisterModel) -> None:
    """What decoding does not already check (paths, digests, sizes and the entrypoint grammar
    are refused by the contracts at decode): project name, no scenario, a sane file count."""
    check_project(cmd.project)
    ep = parse_entrypoint(cmd.model.entrypoint)
    if ep.scenario:
        raise Rejected(
            f"entrypoint {cmd.model.entrypoint!r} names scenario {ep.scenario!r}",
            field="model.entrypoint",
            hint=f"register {ep.target!r}; the scenario is chosen per study",
        )
    if len(cmd.model.files) > MAX_FILES:
        raise Rejected(
            f"model {cmd.model.id!r} tracks {len(cmd.model.files)} files (at most {MAX_FILES})",
            field="model.data",
            hint="track data folders that hold model inputs only; list the rest in .modelopsignore",
        )


def merge_model(registry: Registry, entry: ModelEntry) -> tuple[Registry, list[str]]:
    """`registry` with `entry` added or replaced, and the ids of other models that share a file
    with it and take its newer digest (a registry holds one version of each path)."""
    fresh = {f.path: f for f in entry.files}
    models: dict[str, ModelEntry] = {}
    refreshed: list[str] = []
    for mid, other in sorted(registry.models.items()):
        if mid == entry.id:
            continue
        if any(f.path in fresh and fresh[f.path] != f for f in other.files):
            other = msgspec.structs.replace(
                other,
                code=[fresh.get(f.path, f) for f in other.code],
                data=[fresh.get(f.path, f) for f in other.data],
            )
            refreshed.append(mid)
        models[mid] = other
    models[entry.id] = entry
    try:
        merged = Registry(version=registry.version, project=registry.project, models=models)
    except ValueError as exc:  # e.g. a refreshed model whose own path now clashes
        raise Rejected(
            f"model {entry.id!r} cannot join the registry: {exc}", field="model"
        ) from exc
    return merged, refreshed


async def _apply(cmd: RegisterModel, store: ModelsStore) -> tuple[Registry, int, list[str], bool]:
    """One read-merge-write round: (registry, revision, refreshed ids, written)."""
    current = await store.get(cmd.project)
    base = current.registry if current else Registry(project=cmd.project)
    merged, refreshed = merge_model(base, cmd.model)
    if current is not None and merged == current.registry:
        return merged, current.revision, refreshed, False
    if current is None:
        revision = await store.create(cmd.project, merged)
    else:
        revision = await store.update(cmd.project, merged, revision=current.revision)
    return merged, revision, refreshed, True


async def on_register_model(
    cmd: RegisterModel, *, store: ModelsStore, attempts: int = 32
) -> list[ModelRegistered]:
    """Record `cmd.model` in its project's registry; one ModelRegistered for it, then one per
    other model whose shared files took its digests. Rejected if invalid; Transient if the
    store is unreachable or `attempts` compare-and-sets all lost."""
    check_register_model(cmd)
    for attempt in range(1, attempts + 1):
        try:
            registry, revision, refreshed, written = await _apply(cmd, store)
        except RegistryConflict:
            log.debug("registry.conflict", project=cmd.project, attempt=attempt)
            continue
        log.info(
            "model.registered",
            project=cmd.project,
            model=cmd.model.id,
            digest=cmd.model.digest,
            revision=revision,
            written=written,
            refreshed=refreshed,
            attempts=attempt,
        )
        return [
            ModelRegistered(
                id=f"{cmd.id}.registered.{mid}",
                correlation_id=cmd.correlation_id,
                source=SOURCE,
                project=cmd.project,
                model=registry.models[mid],
                model_digest=registry.models[mid].digest,
                revision=revision,
            )
            for mid in [cmd.model.id, *refreshed]
        ]
    raise Transient(
        f"registry of project {cmd.project!r} changed {attempts} times while registering "
        f"{cmd.model.id!r}",
        hint="too many concurrent registrations; the command will be retried",
    )
