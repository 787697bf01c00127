"""Bundler decisions: BuildBundle (or ModelRegistered) in, BundlePushed or BundleFailed out.

The bundler never sees model files: the CLI uploaded their blobs. It composes config and
manifest from a registry (the command's own, or the registrar's copy in KV), checks every
file blob is in the store, pushes config + manifest, tags, and records the bundle. The bundle
store is passed in (its calls block, so they run in a worker thread); KV and the clock too.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Protocol

import structlog

from modelops_bundle.errors import BundleError, StoreUnavailable
from modelops_bundle.push import MissingBlobs, PublishedBundle, publish_bundle
from modelops_bundle.registry_file import dump_registry
from modelops_bundle.stores import BundleStore
from modelops_bundle.stores.base import check_repository, check_tag
from modelops_contracts import (
    BuildBundle,
    BundleFailed,
    BundlePushed,
    ModelRegistered,
    Registry,
)
from modelops_contracts.messages import utc_now

from .errors import Rejected, Transient
from .records import BundleRecord

__all__ = [
    "SOURCE",
    "BundleIndex",
    "RegistrySource",
    "build_for_registration",
    "check_build_bundle",
    "on_build_bundle",
    "select_models",
]

log = structlog.get_logger(__name__)

SOURCE = "modelops.bundler"
_PROJECT_RE = re.compile(r"^[A-Za-z0-9_=-]+(?:[./][A-Za-z0-9_=-]+)*\Z")


class RegistrySource(Protocol):
    """The registrar's copy of each project's registry (KV_MODELS)."""

    async def get(self, project: str) -> Registry | None:
        """The project's registry, None if it has none; Transient if unreachable."""
        ...


class BundleIndex(Protocol):
    """The bundle index bucket (KV_BUNDLES)."""

    async def record(self, record: BundleRecord) -> None:
        """Store `record` by digest and as its project's latest; Transient if unreachable."""
        ...


def check_build_bundle(cmd: BuildBundle) -> None:
    """Refuse names that cannot become KV keys, OCI repositories or tags."""
    if len(cmd.project) > 128 or not _PROJECT_RE.match(cmd.project):
        raise Rejected(
            f"project name {cmd.project!r} is not usable as a registry key",
            field="project",
            hint="use letters, digits, '_', '-', '=' in parts joined by '.' or '/' (≤ 128 chars)",
        )
    checks = (("repository", check_repository, cmd.repository), ("tag", check_tag, cmd.tag))
    for field, check, value in checks:
        if value is None:
            continue
        try:
            check(value)
        except BundleError as exc:
            raise Rejected(exc.message, field=field, hint=exc.hint) from exc


def select_models(registry: Registry, models: list[str] | None) -> Registry:
    """The registry restricted to `models` (all if None); Rejected naming unknown ids."""
    if models is None:
        return registry
    unknown = sorted(set(models) - set(registry.models))
    if unknown:
        raise Rejected(
            f"project {registry.project!r} has no model(s) {', '.join(map(repr, unknown))}",
            field="models",
            hint=f"registered models: {', '.join(sorted(registry.models)) or 'none'}",
        )
    return Registry(
        version=registry.version,
        project=registry.project,
        models={mid: registry.models[mid] for mid in sorted(set(models))},
    )


def _failed(cmd: BuildBundle, reason: str, missing: list[str] | None = None) -> BundleFailed:
    return BundleFailed(
        id=f"{cmd.id}.failed",
        correlation_id=cmd.correlation_id,
        source=SOURCE,
        project=cmd.project,
        reason=reason,
        missing_blobs=missing or [],
    )


async def _publish(cmd: BuildBundle, registry: Registry, store: BundleStore) -> PublishedBundle:
    """publish_bundle in a worker thread, its errors sorted into retry / fail."""
    try:
        return await asyncio.to_thread(
            publish_bundle,
            registry,
            store,
            repository=cmd.repository,
            tag=cmd.tag,
            registry_yaml=dump_registry(registry),
        )
    except StoreUnavailable as exc:
        raise Transient(exc.message, hint=exc.hint) from exc


async def on_build_bundle(
    cmd: BuildBundle,
    *,
    models: RegistrySource,
    store: BundleStore,
    index: BundleIndex,
    clock: Callable[[], str] = utc_now,
) -> list[BundlePushed | BundleFailed]:
    """Compose, push, tag and record the bundle `cmd` asks for.

    Rejected for an invalid command; Transient when the store or KV is unreachable; a
    BundleFailed event (returned) when the build itself fails, e.g. blobs not uploaded.
    """
    check_build_bundle(cmd)
    registry = cmd.registry if cmd.registry is not None else await models.get(cmd.project)
    if registry is None or not registry.models:
        reason = f"project {cmd.project!r} has no registered models"
        return [_failed(cmd, reason + "; register one with 'modelops register-model'")]
    registry = select_models(registry, cmd.models)
    try:
        published = await _publish(cmd, registry, store)
    except MissingBlobs as exc:
        log.warning("bundle.failed", project=cmd.project, missing=exc.paths)
        return [_failed(cmd, str(exc), exc.paths)]
    except BundleError as exc:  # refused (auth, integrity, bad name), not unreachable
        log.warning("bundle.failed", project=cmd.project, error=str(exc))
        return [_failed(cmd, str(exc))]
    await index.record(
        BundleRecord(
            bundle_ref=published.bundle_ref,
            digest=published.digest,
            project=cmd.project,
            repository=cmd.repository,
            tag=published.tag,
            models=published.models,
            size=published.size,
            pushed_at=clock(),
            correlation_id=cmd.correlation_id,
        )
    )
    log.info(
        "bundle.pushed",
        project=cmd.project,
        bundle_ref=published.bundle_ref,
        tag=published.tag,
        models=sorted(published.models),
    )
    return [
        BundlePushed(
            id=f"{cmd.id}.pushed",
            correlation_id=cmd.correlation_id,
            source=SOURCE,
            project=cmd.project,
            bundle_ref=published.bundle_ref,
            digest=published.digest,
            repository=cmd.repository,
            tag=published.tag,
            models=published.models,
            size=published.size,
        )
    ]


def build_for_registration(event: ModelRegistered, *, repository: str = "") -> BuildBundle:
    """The build a registration triggers (when the bundler is set to build on register):
    the project's whole registry from KV, into `repository` (default: the project name)."""
    return BuildBundle(
        id=f"{event.id}.build",
        correlation_id=event.correlation_id,
        source=SOURCE,
        project=event.project,
        repository=repository or event.project,
    )
