"""LayoutStore: bundles in an OCI image-layout folder (the embedded stack's registry).

Layout: `oci-layout`, `index.json` (tags as `org.opencontainers.image.ref.name` annotations,
plus our repository annotation since one folder can hold several repositories), and
`blobs/sha256/<hex>`. Blobs are hashed while copied and land by atomic rename, so a reader
never sees a partial or wrong blob; `index.json` updates happen under an flock, so several
processes can push into one folder at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import structlog

from ..errors import BundleNotFound, IntegrityError, StoreError
from ..oci import MANIFEST_MEDIA_TYPE, sha256_digest
from .base import BlobStream, ProgressFn, check_digest, check_repository, check_tag
from .files import atomic_write_bytes, exclusive_lock, fsync_dir, write_verified

__all__ = ["REPOSITORY_ANNOTATION", "LayoutStore"]

log = structlog.get_logger(__name__)

REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
REPOSITORY_ANNOTATION = "io.modelops.repository"
_INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
_CHUNK = 1 << 20
MAX_MANIFEST_BYTES = 4 << 20


class LayoutStore:
    """An OCI image-layout folder used as a bundle store (`ref_host` is `local`)."""

    ref_host = "local"

    def __init__(self, root: Path | str, *, chunk_size: int = _CHUNK) -> None:
        self.root = Path(root)
        self._chunk = chunk_size

    def __repr__(self) -> str:
        return f"LayoutStore({str(self.root)!r})"

    # -- layout files --------------------------------------------------------------------

    def _blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / check_digest(digest).removeprefix("sha256:")

    def _ensure(self) -> None:
        """Create the layout skeleton on first write (never on read: a typo must not create)."""
        try:
            (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
            if not (self.root / "oci-layout").exists():
                atomic_write_bytes(self.root / "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
            if not (self.root / "index.json").exists():
                with exclusive_lock(self.root / "index.json.lock"):
                    if not (self.root / "index.json").exists():
                        self._write_index([])
        except OSError as exc:
            raise StoreError(
                f"cannot create OCI layout folder {self.root}: {exc}",
                hint="check the path and its permissions",
            ) from exc

    def _read_index(self) -> list[dict[str, Any]]:
        try:
            data = json.loads((self.root / "index.json").read_bytes())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot read {self.root / 'index.json'}: {exc}") from exc
        manifests = data.get("manifests") if isinstance(data, dict) else None
        if not isinstance(manifests, list):
            raise StoreError(f"{self.root / 'index.json'} has no 'manifests' list")
        return manifests

    def _write_index(self, manifests: list[dict[str, Any]]) -> None:
        doc = {"schemaVersion": 2, "mediaType": _INDEX_MEDIA_TYPE, "manifests": manifests}
        atomic_write_bytes(self.root / "index.json", json.dumps(doc, indent=1).encode())
        fsync_dir(self.root)

    # -- blobs ---------------------------------------------------------------------------

    def blob_exists(self, repository: str, digest: str) -> bool:
        return self._blob_path(digest).is_file()

    def _file_chunks(self, path: Path, progress: ProgressFn | None) -> Iterator[bytes]:
        with open(path, "rb") as f:
            while chunk := f.read(self._chunk):
                if progress:
                    progress(len(chunk))
                yield chunk

    def push_blob(
        self,
        repository: str,
        digest: str,
        path: Path,
        size: int,
        progress: ProgressFn | None = None,
    ) -> int:
        dest = self._blob_path(digest)
        if dest.is_file():
            return 0
        self._ensure()
        written = write_verified(
            self._file_chunks(Path(path), progress), dest, digest=digest, size=size, name=str(path)
        )
        fsync_dir(dest.parent)
        return written

    def push_blob_bytes(self, repository: str, digest: str, data: bytes) -> None:
        dest = self._blob_path(digest)
        if sha256_digest(data) != digest:
            raise IntegrityError(f"bytes given for blob {digest} hash to {sha256_digest(data)}")
        if dest.is_file():
            return
        self._ensure()
        atomic_write_bytes(dest, data)
        fsync_dir(dest.parent)

    def open_blob(self, repository: str, digest: str) -> BlobStream:
        path = self._blob_path(digest)
        try:
            f = open(path, "rb")  # closed by the generator below
        except FileNotFoundError as exc:
            raise BundleNotFound(
                f"blob {digest} is not in layout {self.root}",
                hint="push the bundle (or its files) to this folder first",
            ) from exc
        return self._read_all(f)

    def _read_all(self, f: BinaryIO) -> BlobStream:
        with f:
            while chunk := f.read(self._chunk):
                yield chunk

    # -- manifests and tags --------------------------------------------------------------

    def push_manifest(self, repository: str, manifest_bytes: bytes, reference: str) -> str:
        check_repository(repository)
        digest = sha256_digest(manifest_bytes)
        is_digest = reference.startswith("sha256:")
        if is_digest and check_digest(reference) != digest:
            raise IntegrityError(f"manifest pushed as {reference} hashes to {digest}")
        tag = None if is_digest else check_tag(reference)
        self.push_blob_bytes(repository, digest, manifest_bytes)
        try:
            artifact_type = json.loads(manifest_bytes).get("artifactType")
        except ValueError as exc:
            raise StoreError(f"manifest {digest} is not JSON") from exc
        with exclusive_lock(self.root / "index.json.lock"):
            manifests = self._read_index()
            entry: dict[str, Any] = {
                "mediaType": MANIFEST_MEDIA_TYPE,
                "digest": digest,
                "size": len(manifest_bytes),
                "annotations": {REPOSITORY_ANNOTATION: repository},
            }
            if artifact_type:
                entry["artifactType"] = artifact_type
            if tag is None:
                if any(
                    self._matches(m, repository, None) and m.get("digest") == digest
                    for m in manifests
                ):
                    return digest
            else:
                entry["annotations"][REF_NAME_ANNOTATION] = tag
                manifests = [m for m in manifests if not self._matches(m, repository, tag)]
            manifests.append(entry)
            self._write_index(manifests)
        log.debug(
            "layout.manifest_pushed",
            root=str(self.root),
            repository=repository,
            reference=reference,
        )
        return digest

    @staticmethod
    def _matches(entry: dict[str, Any], repository: str, tag: str | None) -> bool:
        ann = entry.get("annotations") or {}
        if ann.get(REPOSITORY_ANNOTATION, repository) != repository:
            return False
        return tag is None or ann.get(REF_NAME_ANNOTATION) == tag

    def resolve(self, repository: str, tag: str) -> str:
        check_tag(tag)
        for entry in reversed(self._read_index()):
            if self._matches(entry, repository, tag):
                return check_digest(entry.get("digest", ""))
        raise BundleNotFound(
            f"no tag {tag!r} for repository {repository!r} in layout {self.root}",
            hint="push the bundle first ('modelops build --push'), or check the repository name",
        )

    def get_manifest(self, repository: str, reference: str) -> bytes:
        digest = (
            reference if reference.startswith("sha256:") else self.resolve(repository, reference)
        )
        path = self._blob_path(digest)
        try:
            if path.stat().st_size > MAX_MANIFEST_BYTES:
                raise StoreError(f"manifest {digest} in {self.root} is larger than 4 MiB")
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise BundleNotFound(
                f"manifest {digest} ({repository}) is not in layout {self.root}",
                hint="push the bundle to this folder first, or check --registry",
            ) from exc

    def close(self) -> None:
        """Nothing to release: every operation opens and closes its own files."""
