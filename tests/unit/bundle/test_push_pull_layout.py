"""push/publish/pull through an OCI layout folder (the embedded stack's path): no servers."""

from __future__ import annotations

import json
import os
import stat
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from modelops_bundle.errors import (
    BundleError,
    FilesChanged,
    IntegrityError,
    ModelNotFound,
    UnsafePath,
)
from modelops_bundle.oci import INDEX_FILENAME, MARKER_FILENAME, compose_bundle, sha256_digest
from modelops_bundle.pull import pull_bundle, read_bundle_index
from modelops_bundle.push import MissingBlobs, publish_bundle, push_bundle, upload_missing_blobs
from modelops_bundle.registry_file import dump_registry
from modelops_bundle.stores import LayoutStore
from tests.unit.bundle.oci_helpers import DEFAULT_FILES, make_project

REPO = "demo/sir"


class CountingStore:
    """A LayoutStore that counts calls, to prove what does (not) touch the store."""

    def __init__(self, inner: LayoutStore) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.ref_host = inner.ref_host

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if callable(attr):

            def counted(*args: Any, **kwargs: Any) -> Any:
                self.calls[name] += 1
                return attr(*args, **kwargs)

            return counted
        return attr


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, Any]:
    root = tmp_path / "project"
    return root, make_project(root)


def _push(root: Path, registry: Any, store: Any) -> Any:
    return push_bundle(
        root, registry, store, repository=REPO, registry_yaml=dump_registry(registry)
    )


def test_round_trip_materializes_every_file_verified(tmp_path: Path, project: Any) -> None:
    root, registry = project
    store = LayoutStore(tmp_path / "layout")
    result = _push(root, registry, store)
    assert result.bundle.bundle_ref == f"local/{REPO}@{result.bundle.digest}"
    assert result.bundle.models == {"sir": registry.models["sir"].digest}
    assert store.resolve(REPO, "latest") == result.bundle.digest
    # two empty files share one blob: sent once
    assert len(result.upload.uploaded) == len(DEFAULT_FILES)
    assert result.upload.bytes_sent == sum(len(b) for b in DEFAULT_FILES.values()) + 32

    cache = tmp_path / "cache"
    tree = pull_bundle(store, result.bundle.bundle_ref, cache_dir=cache)
    assert tree == cache / result.bundle.digest[7:]
    for path in registry.files():
        assert (tree / path).read_bytes() == (root / path).read_bytes()
        assert stat.S_IMODE((tree / path).stat().st_mode) == 0o444
    index = json.loads((tree / INDEX_FILENAME).read_bytes())
    assert index["models"]["sir"]["entrypoint"] == "model:SIR"
    assert (tree / MARKER_FILENAME).read_text().splitlines()[0] == result.bundle.digest
    assert sorted(os.listdir(cache)) == [result.bundle.digest[7:]]  # no staging, no lock left


def test_a_complete_copy_is_reused_without_the_store(tmp_path: Path, project: Any) -> None:
    root, registry = project
    store = LayoutStore(tmp_path / "layout")
    ref = _push(root, registry, store).bundle.bundle_ref
    first = pull_bundle(store, ref, cache_dir=tmp_path / "cache")
    counting = CountingStore(store)
    again = pull_bundle(counting, ref, cache_dir=tmp_path / "cache")  # type: ignore[arg-type]
    assert again == first
    assert sum(counting.calls.values()) == 0


def test_repush_sends_nothing_and_same_content_same_digest(tmp_path: Path, project: Any) -> None:
    root, registry = project
    one = _push(root, registry, LayoutStore(tmp_path / "a"))
    again = _push(root, registry, LayoutStore(tmp_path / "a"))
    elsewhere = _push(root, registry, LayoutStore(tmp_path / "b"))
    assert again.upload.uploaded == [] and again.upload.bytes_sent == 0
    assert one.bundle.digest == again.bundle.digest == elsewhere.bundle.digest


def test_publish_without_blobs_names_the_missing_paths(tmp_path: Path, project: Any) -> None:
    _root, registry = project
    store = LayoutStore(tmp_path / "layout")
    with pytest.raises(MissingBlobs, match="modelops build --push") as info:
        publish_bundle(registry, store, repository=REPO, registry_yaml=dump_registry(registry))
    assert info.value.paths == sorted(registry.files())
    assert not (tmp_path / "layout" / "index.json").exists()


def test_files_changed_since_registration_are_refused_before_upload(
    tmp_path: Path, project: Any
) -> None:
    root, registry = project
    (root / "data" / "contacts.csv").write_bytes(b"grown since registration\n")
    (root / "util" / "helpers.py").unlink()
    store = LayoutStore(tmp_path / "layout")
    with pytest.raises(FilesChanged, match="register-model") as info:
        upload_missing_blobs(root, registry, store, repository=REPO)
    assert sorted(p for p, _ in info.value.files) == ["data/contacts.csv", "util/helpers.py"]
    assert not (tmp_path / "layout").exists()


def test_same_size_edit_is_caught_by_the_store_hash(tmp_path: Path, project: Any) -> None:
    root, registry = project
    (root / "data" / "contacts.csv").write_bytes(b"a,b\n9,9\n")  # same size, new bytes
    with pytest.raises(IntegrityError, match=r"contacts\.csv"):
        upload_missing_blobs(root, registry, LayoutStore(tmp_path / "layout"), repository=REPO)


def test_symlink_leaving_the_project_is_refused(tmp_path: Path, project: Any) -> None:
    root, registry = project
    outside = tmp_path / "outside.csv"
    outside.write_bytes((root / "data" / "contacts.csv").read_bytes())
    (root / "data" / "contacts.csv").unlink()
    (root / "data" / "contacts.csv").symlink_to(outside)
    with pytest.raises(UnsafePath, match=r"contacts\.csv"):
        upload_missing_blobs(root, registry, LayoutStore(tmp_path / "layout"), repository=REPO)


def test_tampered_blob_is_refused_and_cache_left_empty(tmp_path: Path, project: Any) -> None:
    root, registry = project
    store = LayoutStore(tmp_path / "layout")
    ref = _push(root, registry, store).bundle.bundle_ref
    victim = registry.files()["data/contacts.csv"]
    blob = tmp_path / "layout" / "blobs" / "sha256" / victim.digest[7:]
    blob.write_bytes(b"x" * victim.size)
    cache = tmp_path / "cache"
    with pytest.raises(IntegrityError, match=r"data/contacts\.csv") as info:
        pull_bundle(store, ref, cache_dir=cache)
    assert victim.digest in str(info.value)
    assert os.listdir(cache) == []


def test_manifest_not_matching_its_digest_is_refused(tmp_path: Path, project: Any) -> None:
    root, registry = project
    store = LayoutStore(tmp_path / "layout")
    bundle = _push(root, registry, store).bundle
    path = tmp_path / "layout" / "blobs" / "sha256" / bundle.digest[7:]
    path.write_bytes(path.read_bytes().replace(b'"demo"', b'"evil"'))
    with pytest.raises(IntegrityError, match="manifest"):
        pull_bundle(store, bundle.bundle_ref, cache_dir=tmp_path / "cache")
    assert os.listdir(tmp_path / "cache") == []


def _push_raw_bundle(
    store: LayoutStore, index_doc: dict[str, Any], layers: list[dict[str, Any]]
) -> str:
    """Push a hand-made (hostile) bundle, bypassing compose_bundle's checks."""
    config = json.dumps(index_doc).encode()
    store.push_blob_bytes(REPO, sha256_digest(config), config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": "application/vnd.modelops.bundle.v1",
            "config": {
                "mediaType": "application/vnd.modelops.bundle.config.v1+json",
                "digest": sha256_digest(config),
                "size": len(config),
            },
            "layers": layers,
        }
    ).encode()
    return store.push_manifest(REPO, manifest, sha256_digest(manifest))


def test_index_with_dotdot_is_refused_at_pull(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path / "layout")
    payload = b"pwned\n"
    digest = sha256_digest(payload)
    store.push_blob_bytes(REPO, digest, payload)
    layer = {
        "mediaType": "application/vnd.modelops.file.v1",
        "digest": digest,
        "size": len(payload),
        "annotations": {"org.opencontainers.image.title": "x"},
    }
    index = {
        "project": "p",
        "files": [{"path": "../x", "digest": digest, "size": len(payload)}],
        "models": {},
    }
    manifest_digest = _push_raw_bundle(store, index, [layer])
    cache = tmp_path / "cache"
    with pytest.raises(UnsafePath, match=r"'\.\./x'"):
        pull_bundle(store, f"local/{REPO}@{manifest_digest}", cache_dir=cache)
    assert os.listdir(cache) == []
    assert not (tmp_path / "x").exists()


def test_stale_staging_from_a_killed_pull_is_cleared(tmp_path: Path, project: Any) -> None:
    root, registry = project
    store = LayoutStore(tmp_path / "layout")
    bundle = _push(root, registry, store).bundle
    cache = tmp_path / "cache"
    stale = cache / f".tmp-{bundle.digest[7:]}-dead"
    (stale / "tree").mkdir(parents=True)
    half = cache / bundle.digest[7:]  # an incomplete tree (no marker): never trusted
    half.mkdir()
    (half / "model.py").write_bytes(b"garbage")
    tree = pull_bundle(store, bundle.bundle_ref, cache_dir=cache)
    assert (tree / "model.py").read_bytes() == (root / "model.py").read_bytes()
    assert sorted(os.listdir(cache)) == [bundle.digest[7:]]


def test_read_bundle_index_checks_the_entrypoint(tmp_path: Path, project: Any) -> None:
    root, registry = project
    store = LayoutStore(tmp_path / "layout")
    bundle = _push(root, registry, store).bundle
    index = read_bundle_index(store, bundle.bundle_ref, entrypoint="model:SIR/lockdown")
    assert index.models["sir"].digest == bundle.models["sir"]
    with pytest.raises(ModelNotFound, match="model:Other"):
        read_bundle_index(store, bundle.bundle_ref, entrypoint="model:Other")
    # a bare digest works too, with the repository given separately
    assert read_bundle_index(store, bundle.digest, repository=REPO) == index
    with pytest.raises(BundleError, match="needs a repository"):
        read_bundle_index(store, bundle.digest)


def test_compose_of_pushed_registry_matches_published_digest(tmp_path: Path, project: Any) -> None:
    root, registry = project
    bundle = _push(root, registry, LayoutStore(tmp_path / "layout")).bundle
    assert (
        compose_bundle(registry, registry_yaml=dump_registry(registry)).manifest_digest
        == bundle.digest
    )
