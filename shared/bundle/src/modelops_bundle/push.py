"""Pushing bundles: upload the file blobs a store lacks, then publish config + manifest.

The two halves run in different places: the CLI uploads blobs from the modeler's disk
(`upload_missing_blobs`), the bundler service only writes config and manifest
(`publish_bundle`), which needs no files. `push_bundle` does both for the direct path.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import structlog

from modelops_contracts import Registry, TrackedFile, parse_bundle_ref

from .errors import BundleNotFound, FilesChanged
from .oci import compose_bundle
from .project import real_path_in_root, safe_relative
from .stores.base import BundleStore, ProgressFn, check_repository, check_tag, run_concurrently

__all__ = [
    "MissingBlobs",
    "PublishedBundle",
    "PushResult",
    "UploadReport",
    "publish_bundle",
    "push_bundle",
    "upload_missing_blobs",
]

log = structlog.get_logger(__name__)


class MissingBlobs(BundleNotFound):
    """Files of the bundle have no blob in the store yet. `paths` lists them."""

    def __init__(self, message: str, *, paths: list[str], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.paths = paths


@dataclass(frozen=True)
class UploadReport:
    """Which blobs were sent, which the store already had, and how many bytes went out."""

    uploaded: list[str]
    skipped: list[str]
    bytes_sent: int


@dataclass(frozen=True)
class PublishedBundle:
    """A bundle now in the store: its digest-pinned reference and model digests."""

    bundle_ref: str
    digest: str
    size: int
    models: dict[str, str]
    tag: str


@dataclass(frozen=True)
class PushResult:
    upload: UploadReport
    bundle: PublishedBundle


def _local_files(root: Path, registry: Registry) -> dict[str, tuple[TrackedFile, Path]]:
    """digest -> (tracked file, real path) after checking every file still has its size."""
    problems: list[tuple[str, str]] = []
    by_digest: dict[str, tuple[TrackedFile, Path]] = {}
    for f in registry.files().values():
        safe_relative(f.path, what="tracked file")
        real = real_path_in_root(root, f.path, what="tracked file")
        try:
            st = os.stat(real)
        except FileNotFoundError:
            problems.append((f.path, "missing"))
            continue
        if not stat.S_ISREG(st.st_mode):
            problems.append((f.path, "not a regular file"))
        elif st.st_size != f.size:
            problems.append((f.path, f"modified ({st.st_size} bytes, registered {f.size})"))
        else:
            by_digest.setdefault(f.digest, (f, real))
    if problems:
        listed = ", ".join(f"{p} ({state})" for p, state in problems[:10])
        raise FilesChanged(
            f"{len(problems)} tracked file(s) differ from registry.yaml: {listed}",
            files=problems,
            hint="run 'modelops register-model' again to record their current content",
        )
    return by_digest


def upload_missing_blobs(
    project_root: str | os.PathLike[str],
    registry: Registry,
    store: BundleStore,
    *,
    repository: str,
    concurrency: int = 4,
    progress: ProgressFn | None = None,
) -> UploadReport:
    """Upload each tracked file's blob that `store` lacks (HEAD first), `concurrency` at a time.

    Digests come from the registry, so files are read once, while sending; a file whose size
    no longer matches is refused up front (FilesChanged) and one whose bytes changed is
    refused by the store (IntegrityError). Identical files are sent once.
    """
    check_repository(repository)
    files = _local_files(Path(project_root), registry)

    def one(digest: str) -> tuple[str, int]:
        tracked, real = files[digest]
        if store.blob_exists(repository, digest):
            return "skipped", 0
        return "uploaded", store.push_blob(repository, digest, real, tracked.size, progress)

    digests = sorted(files)
    results = run_concurrently(one, digests, concurrency)
    uploaded = [d for d, (state, _) in zip(digests, results, strict=True) if state == "uploaded"]
    skipped = [d for d, (state, _) in zip(digests, results, strict=True) if state == "skipped"]
    report = UploadReport(uploaded=uploaded, skipped=skipped, bytes_sent=sum(n for _, n in results))
    log.info(
        "bundle.blobs_uploaded",
        store=repr(store),
        repository=repository,
        uploaded=len(uploaded),
        skipped=len(skipped),
        bytes_sent=report.bytes_sent,
    )
    return report


def publish_bundle(
    registry: Registry,
    store: BundleStore,
    *,
    repository: str,
    tag: str | None = None,
    registry_yaml: bytes,
    annotations: dict[str, str] | None = None,
    concurrency: int = 8,
) -> PublishedBundle:
    """Write config + manifest for `registry` (by digest, then by `tag`, default "latest").

    Every file blob must already be in the store: otherwise MissingBlobs lists the paths, and
    nothing is written. `registry_yaml` should be `registry_file.dump_registry(registry)`.
    """
    check_repository(repository)
    tag = check_tag(tag or "latest")
    composed = compose_bundle(registry, registry_yaml=registry_yaml, annotations=annotations)
    digests = sorted({f.digest for f in composed.layers})
    present = run_concurrently(lambda d: store.blob_exists(repository, d), digests, concurrency)
    missing = {d for d, ok in zip(digests, present, strict=True) if not ok}
    if missing:
        paths = sorted(f.path for f in composed.layers if f.digest in missing)
        raise MissingBlobs(
            f"{len(paths)} file(s) of project {registry.project!r} are not in {repository} on "
            f"{store.ref_host}: {', '.join(paths[:10])}" + (" ..." if len(paths) > 10 else ""),
            paths=paths,
            hint="upload them first: 'modelops build --push' from the project folder",
        )
    if not store.blob_exists(repository, composed.config_digest):
        store.push_blob_bytes(repository, composed.config_digest, composed.config_bytes)
    store.push_manifest(repository, composed.manifest_bytes, composed.manifest_digest)
    store.push_manifest(repository, composed.manifest_bytes, tag)
    ref = str(parse_bundle_ref(f"{store.ref_host}/{repository}@{composed.manifest_digest}"))
    log.info("bundle.published", bundle_ref=ref, tag=tag, files=len(composed.layers))
    return PublishedBundle(
        bundle_ref=ref,
        digest=composed.manifest_digest,
        size=len(composed.manifest_bytes),
        models=composed.models,
        tag=tag,
    )


def push_bundle(
    project_root: str | os.PathLike[str],
    registry: Registry,
    store: BundleStore,
    *,
    repository: str,
    registry_yaml: bytes,
    tag: str | None = None,
    annotations: dict[str, str] | None = None,
    concurrency: int = 4,
    progress: ProgressFn | None = None,
) -> PushResult:
    """Upload missing blobs, then publish: the whole push without the bundler service."""
    upload = upload_missing_blobs(
        project_root,
        registry,
        store,
        repository=repository,
        concurrency=concurrency,
        progress=progress,
    )
    bundle = publish_bundle(
        registry,
        store,
        repository=repository,
        tag=tag,
        registry_yaml=registry_yaml,
        annotations=annotations,
    )
    return PushResult(upload=upload, bundle=bundle)
