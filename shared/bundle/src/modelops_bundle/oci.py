"""Bundle manifests and configs: composing them from a registry, and reading them back. Pure.

A bundle is an OCI 1.1 image manifest with `artifactType` BUNDLE_ARTIFACT_TYPE, one layer per
tracked file (title annotation = project-relative path) and a config blob holding the bundle
index (files, models, registry.yaml text). Everything hashed is canonical JSON with layers and
lists sorted and no timestamps, so the same registered content gives the same manifest digest
on any machine, whatever order models or files were registered in.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec

from modelops_contracts import (
    InvalidMessage,
    Registry,
    canonical_bytes,
    check_relative_path,
    parse_entrypoint,
)
from modelops_contracts.refs import Digest

from .errors import BundleError, ModelNotFound, UnsafePath

__all__ = [
    "ANNOTATION_TITLE",
    "BUNDLE_ARTIFACT_TYPE",
    "CONFIG_MEDIA_TYPE",
    "FILE_MEDIA_TYPE",
    "INDEX_FILENAME",
    "MANIFEST_MEDIA_TYPE",
    "MARKER_FILENAME",
    "BundleIndex",
    "BundleManifest",
    "ComposedBundle",
    "Descriptor",
    "IndexFile",
    "IndexModel",
    "InvalidBundle",
    "check_layers_match",
    "compose_bundle",
    "encode_index",
    "parse_bundle_config",
    "parse_bundle_manifest",
    "sha256_digest",
]

BUNDLE_ARTIFACT_TYPE = "application/vnd.modelops.bundle.v1"
FILE_MEDIA_TYPE = "application/vnd.modelops.file.v1"
CONFIG_MEDIA_TYPE = "application/vnd.modelops.bundle.config.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
ANNOTATION_TITLE = "org.opencontainers.image.title"
_ANNOTATION_CREATED = "org.opencontainers.image.created"
INDEX_FILENAME = ".modelops-bundle-index.json"
MARKER_FILENAME = ".modelops-bundle-complete"
_RESERVED = frozenset({INDEX_FILENAME, MARKER_FILENAME})


class InvalidBundle(BundleError):
    """A manifest or bundle index is malformed or inconsistent (not a bundle we can use)."""


class IndexFile(msgspec.Struct, frozen=True, kw_only=True):
    """One file of the bundle: where it goes, and the blob holding its bytes."""

    path: str
    digest: Digest
    size: Annotated[int, msgspec.Meta(ge=0)]


class IndexModel(msgspec.Struct, frozen=True, kw_only=True):
    """One model of the bundle, as registered; `digest` is its model digest."""

    id: str
    entrypoint: str
    path: str
    digest: Digest
    code: list[str]
    data: list[str] = []
    outputs: list[str] = []
    scenarios: list[str] = []
    parameters: list[str] = []


class BundleIndex(msgspec.Struct, frozen=True, kw_only=True):
    """The config blob of a bundle: what the runner and submitter read instead of the manifest."""

    version: Literal[1] = 1
    project: str
    files: list[IndexFile]
    models: dict[str, IndexModel]
    registry_yaml: str = ""

    def model_for(self, entrypoint: str) -> IndexModel:
        """The model an entrypoint (`module:Class[/scenario]`) names, or ModelNotFound."""
        wanted = parse_entrypoint(entrypoint)
        for model in self.models.values():
            if parse_entrypoint(model.entrypoint).target != wanted.target:
                continue
            # An empty list means registration recorded no scenarios: nothing to check against.
            if wanted.scenario and model.scenarios and wanted.scenario not in model.scenarios:
                raise ModelNotFound(
                    f"model {model.id!r} ({wanted.target}) has no scenario {wanted.scenario!r}",
                    hint=f"its scenarios are: {', '.join(model.scenarios)}",
                )
            return model
        known = ", ".join(sorted(m.entrypoint for m in self.models.values())) or "none"
        raise ModelNotFound(
            f"bundle of project {self.project!r} has no model with entrypoint {wanted.target!r}",
            hint=f"entrypoints in this bundle: {known}",
        )


class Descriptor(msgspec.Struct, frozen=True, kw_only=True):
    """An OCI content descriptor (the fields we use)."""

    mediaType: str
    digest: Digest
    size: Annotated[int, msgspec.Meta(ge=0)]
    annotations: dict[str, str] = {}


class _Manifest(msgspec.Struct, kw_only=True):
    schemaVersion: int
    mediaType: str = ""
    artifactType: str = ""
    config: Descriptor
    layers: list[Descriptor] = []
    annotations: dict[str, str] = {}


@dataclass(frozen=True)
class BundleManifest:
    """A parsed bundle manifest: its config descriptor and (path, blob) layers."""

    config: Descriptor
    layers: tuple[IndexFile, ...]
    annotations: dict[str, str]


@dataclass(frozen=True)
class ComposedBundle:
    """What `compose_bundle` builds: exact bytes to push, and their digests."""

    config_bytes: bytes
    config_digest: str
    manifest_bytes: bytes
    manifest_digest: str
    layers: tuple[IndexFile, ...]
    index: BundleIndex

    @property
    def models(self) -> dict[str, str]:
        """Model id -> model digest."""
        return {mid: m.digest for mid, m in self.index.models.items()}


_index_decoder = msgspec.json.Decoder(BundleIndex)
_manifest_decoder = msgspec.json.Decoder(_Manifest)


def sha256_digest(data: bytes) -> str:
    """`sha256:<hex>` of some bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _build_index(registry: Registry, registry_yaml: str) -> BundleIndex:
    files = [
        IndexFile(path=f.path, digest=f.digest, size=f.size) for f in registry.files().values()
    ]
    models = {
        mid: IndexModel(
            id=entry.id,
            entrypoint=entry.entrypoint,
            path=entry.path,
            digest=entry.digest,
            code=sorted(f.path for f in entry.code),
            data=sorted(f.path for f in entry.data),
            outputs=sorted(entry.outputs),
            scenarios=sorted(entry.scenarios),
            parameters=sorted(entry.parameters),
        )
        for mid, entry in sorted(registry.models.items())
    }
    return BundleIndex(
        project=registry.project,
        files=sorted(files, key=lambda f: f.path),
        models=models,
        registry_yaml=registry_yaml,
    )


def _manifest_annotations(project: str, extra: dict[str, str] | None) -> dict[str, str]:
    out = {ANNOTATION_TITLE: project}
    for key, value in (extra or {}).items():
        if key == _ANNOTATION_CREATED:
            raise BundleError(
                f"annotation {key!r} would put a timestamp into the bundle digest",
                hint="leave it out: the same registered content must give the same digest",
            )
        if not isinstance(key, str) or not isinstance(value, str):
            raise BundleError(f"annotation {key!r}={value!r} is not a string pair")
        out[key] = value
    return out


def compose_bundle(
    registry: Registry, *, registry_yaml: bytes, annotations: dict[str, str] | None = None
) -> ComposedBundle:
    """Config and manifest bytes for the registry's models. Deterministic; no I/O.

    `registry_yaml` enters the digest as given: pass the bytes the registry writer produced
    (it writes them canonically), not a hand-edited file.
    """
    if not registry.models:
        raise BundleError(
            f"project {registry.project!r} has no registered models, so there is nothing to bundle",
            hint="register one with 'modelops register-model'",
        )
    try:
        yaml_text = registry_yaml.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleError(
            f"registry.yaml of project {registry.project!r} is not UTF-8", hint="re-register"
        ) from exc
    index = _build_index(registry, yaml_text)
    config_bytes = canonical_bytes(index)
    config_digest = sha256_digest(config_bytes)
    layers = tuple(index.files)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": BUNDLE_ARTIFACT_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": config_digest,
            "size": len(config_bytes),
        },
        "layers": [
            {
                "mediaType": FILE_MEDIA_TYPE,
                "digest": f.digest,
                "size": f.size,
                "annotations": {ANNOTATION_TITLE: f.path},
            }
            for f in layers
        ],
        "annotations": _manifest_annotations(registry.project, annotations),
    }
    manifest_bytes = canonical_bytes(manifest)
    return ComposedBundle(
        config_bytes=config_bytes,
        config_digest=config_digest,
        manifest_bytes=manifest_bytes,
        manifest_digest=sha256_digest(manifest_bytes),
        layers=layers,
        index=index,
    )


def _check_path(path: str, what: str) -> None:
    try:
        check_relative_path(path)
    except InvalidMessage as exc:
        raise UnsafePath(
            f"{what} has unsafe path {path!r}: {exc.message}",
            hint="this bundle was not built by modelops or was tampered with; do not use it",
        ) from exc


def _check_tree(paths: list[str], what: str) -> None:
    """Refuse duplicates, reserved names, and a path that is both a file and a folder."""
    seen: set[str] = set()
    for path in paths:
        _check_path(path, what)
        if path in seen:
            raise InvalidBundle(f"{what} lists {path!r} twice")
        if path in _RESERVED:
            raise InvalidBundle(f"{what} contains {path!r}, a name modelops reserves")
        seen.add(path)
    for path in paths:
        parts = path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in seen:
                raise InvalidBundle(
                    f"{what} has {'/'.join(parts[:i])!r} as both a file and a folder"
                )


def parse_bundle_config(data: bytes) -> BundleIndex:
    """Decode and validate a bundle index (config blob): every path safe, every model complete."""
    try:
        index = _index_decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise InvalidBundle(f"bundle index is malformed: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise InvalidBundle(f"bundle index is not JSON: {exc}") from exc
    _check_tree([f.path for f in index.files], "bundle index")
    paths = {f.path for f in index.files}
    for mid, model in index.models.items():
        if mid != model.id:
            raise InvalidBundle(f"bundle index key {mid!r} differs from model id {model.id!r}")
        for p in [model.path, *model.code, *model.data]:
            _check_path(p, f"model {mid!r}")
            if p not in paths:
                raise InvalidBundle(
                    f"model {mid!r} uses {p!r}, which is not among the bundle files"
                )
    return index


def parse_bundle_manifest(data: bytes) -> BundleManifest:
    """Decode a manifest and check that it is a modelops bundle with safe layer titles."""
    try:
        raw = _manifest_decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidBundle(f"manifest is not a valid OCI image manifest: {exc}") from exc
    if raw.schemaVersion != 2 or raw.mediaType not in ("", MANIFEST_MEDIA_TYPE):
        raise InvalidBundle(
            f"manifest has schemaVersion {raw.schemaVersion}, mediaType {raw.mediaType!r}"
        )
    if raw.artifactType != BUNDLE_ARTIFACT_TYPE or raw.config.mediaType != CONFIG_MEDIA_TYPE:
        raise InvalidBundle(
            f"manifest is not a modelops bundle (artifactType {raw.artifactType!r}, "
            f"config {raw.config.mediaType!r})",
            hint="check the reference: it must name a bundle pushed by 'modelops build --push'",
        )
    layers = []
    for layer in raw.layers:
        title = layer.annotations.get(ANNOTATION_TITLE)
        if layer.mediaType != FILE_MEDIA_TYPE or title is None:
            raise InvalidBundle(f"manifest layer {layer.digest} is not a bundle file")
        layers.append(IndexFile(path=title, digest=layer.digest, size=layer.size))
    _check_tree([f.path for f in layers], "manifest")
    return BundleManifest(
        config=raw.config, layers=tuple(layers), annotations=dict(raw.annotations)
    )


def check_layers_match(manifest: BundleManifest, index: BundleIndex) -> None:
    """The manifest's layers and the index's files must be the same (path, digest, size) set."""
    by_manifest = {f.path: f for f in manifest.layers}
    by_index = {f.path: f for f in index.files}
    if by_manifest != by_index:
        differing = sorted(
            p for p in by_manifest.keys() | by_index.keys() if by_manifest.get(p) != by_index.get(p)
        )
        raise InvalidBundle(
            f"manifest layers and bundle index disagree on {', '.join(differing[:10])}"
        )


def encode_index(index: BundleIndex) -> bytes:
    """Canonical bytes of an index (what the config blob holds)."""
    return canonical_bytes(index)
