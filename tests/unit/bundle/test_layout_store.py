"""LayoutStore (OCI image-layout folder) and store location parsing: files only, no servers."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest

from modelops_bundle.errors import BundleError, BundleNotFound, IntegrityError, StoreError
from modelops_bundle.oci import sha256_digest
from modelops_bundle.stores import LayoutStore, RegistryStore, open_store, parse_location
from modelops_bundle.stores.base import is_loopback
from modelops_bundle.stores.layout import REPOSITORY_ANNOTATION


def _blob(store: LayoutStore, tmp_path: Path, data: bytes) -> str:
    digest = sha256_digest(data)
    src = tmp_path / f"src-{digest[7:15]}"
    src.write_bytes(data)
    store.push_blob("demo/sir", digest, src, len(data))
    return digest


def test_layout_round_trip(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path / "layout")
    digest = _blob(store, tmp_path, b"hello" * 1000)
    assert store.blob_exists("demo/sir", digest)
    assert b"".join(store.open_blob("demo/sir", digest)) == b"hello" * 1000
    manifest = b'{"schemaVersion":2,"artifactType":"x"}'
    md = store.push_manifest("demo/sir", manifest, sha256_digest(manifest))
    store.push_manifest("demo/sir", manifest, "v1")
    assert md == sha256_digest(manifest)
    assert store.resolve("demo/sir", "v1") == md
    assert store.get_manifest("demo/sir", "v1") == manifest
    assert store.get_manifest("demo/sir", md) == manifest

    root = tmp_path / "layout"
    assert json.loads((root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    blob = root / "blobs" / "sha256" / digest[7:]
    assert blob.read_bytes() == b"hello" * 1000
    assert blob.stat().st_mode & 0o777 == 0o644
    entries = json.loads((root / "index.json").read_text())["manifests"]
    tagged = [
        e for e in entries if e["annotations"].get("org.opencontainers.image.ref.name") == "v1"
    ]
    assert len(tagged) == 1 and tagged[0]["digest"] == md and tagged[0]["artifactType"] == "x"
    assert tagged[0]["annotations"][REPOSITORY_ANNOTATION] == "demo/sir"
    assert not [p for p in root.rglob("*") if p.name.startswith(".part-")]


def test_tags_are_per_repository_and_move(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path)
    m1, m2 = b'{"n":1}', b'{"n":2}'
    store.push_manifest("a/x", m1, "latest")
    store.push_manifest("b/y", m2, "latest")
    assert store.resolve("a/x", "latest") == sha256_digest(m1)
    assert store.resolve("b/y", "latest") == sha256_digest(m2)
    store.push_manifest("a/x", m2, "latest")
    assert store.resolve("a/x", "latest") == sha256_digest(m2)
    with pytest.raises(BundleNotFound, match="no tag 'latest' for repository 'c/z'"):
        store.resolve("c/z", "latest")


def test_layout_refuses_a_blob_that_does_not_match_its_digest(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path / "layout")
    src = tmp_path / "f"
    src.write_bytes(b"actual")
    wrong = sha256_digest(b"claimed")
    with pytest.raises(IntegrityError, match="expected " + wrong):
        store.push_blob("demo/sir", wrong, src, 6)
    assert not store.blob_exists("demo/sir", wrong)
    assert sorted(p.name for p in (tmp_path / "layout" / "blobs" / "sha256").iterdir()) == []
    with pytest.raises(IntegrityError):
        store.push_blob_bytes("demo/sir", wrong, b"actual")
    with pytest.raises(IntegrityError):
        store.push_manifest("demo/sir", b"{}", wrong)


def test_missing_things_are_bundle_not_found_and_reads_create_nothing(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path / "nowhere")
    with pytest.raises(BundleNotFound):
        store.get_manifest("demo/sir", sha256_digest(b"x"))
    with pytest.raises(BundleNotFound):
        store.open_blob("demo/sir", sha256_digest(b"x"))
    assert not (tmp_path / "nowhere").exists()


def test_digests_and_tags_cannot_escape_the_layout(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path)
    with pytest.raises(BundleError, match="not a digest"):
        store.blob_exists("demo/sir", "sha256:../../etc/passwd")
    with pytest.raises(BundleError, match="not a valid tag"):
        store.push_manifest("demo/sir", b"{}", "../x")
    with pytest.raises(BundleError, match="not a valid repository"):
        store.push_manifest("Demo/../x", b"{}", "latest")


def _push_tags(args: tuple[str, int]) -> None:
    root, worker = args
    store = LayoutStore(root)
    for i in range(5):
        store.push_manifest(
            "demo/sir", json.dumps({"w": worker, "i": i}).encode(), f"w{worker}-{i}"
        )


def test_concurrent_writers_keep_every_tag(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(4) as pool:
        pool.map(_push_tags, [(str(tmp_path), w) for w in range(4)])
    store = LayoutStore(tmp_path)
    for w in range(4):
        for i in range(5):
            expected = sha256_digest(json.dumps({"w": w, "i": i}).encode())
            assert store.resolve("demo/sir", f"w{w}-{i}") == expected
    assert not (tmp_path / "index.json.lock").read_bytes()  # the lock file holds no data


@pytest.mark.parametrize(
    ("location", "kind", "detail"),
    [
        ("oci-layout:/srv/bundles", "layout", "/srv/bundles"),
        ("/srv/bundles", "layout", "/srv/bundles"),
        ("./bundles", "layout", "bundles"),
        ("bundles", "layout", "bundles"),
        ("sub/dir", "layout", "sub/dir"),
        ("127.0.0.1:5000", "registry", "127.0.0.1:5000"),
        ("localhost", "registry", "localhost"),
        ("ghcr.io", "registry", "ghcr.io"),
        ("http://127.0.0.1:5000", "registry", "127.0.0.1:5000"),
        ("https://registry.example.org/", "registry", "registry.example.org"),
    ],
)
def test_parse_location(location: str, kind: str, detail: str) -> None:
    loc = parse_location(location)
    assert loc.kind == kind
    assert (str(loc.path) if kind == "layout" else loc.host) == detail


def test_open_store_picks_the_store_and_guards_plain_http(tmp_path: Path) -> None:
    assert isinstance(open_store(f"oci-layout:{tmp_path}"), LayoutStore)
    assert open_store(str(tmp_path)).ref_host == "local"
    local = open_store("127.0.0.1:5000")
    assert (
        isinstance(local, RegistryStore) and local.insecure and local.ref_host == "127.0.0.1:5000"
    )
    assert not open_store("registry.example.org").insecure  # type: ignore[attr-defined]
    assert open_store("http://localhost:5000").insecure  # type: ignore[attr-defined]
    with pytest.raises(StoreError, match="refusing plain HTTP"):
        open_store("http://registry.example.org:5000")
    forced = open_store("http://registry.example.org:5000", insecure=True)
    assert forced.insecure  # type: ignore[attr-defined]
    with pytest.raises(BundleError, match="no path"):
        open_store("http://127.0.0.1:5000/repo")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1:5000", True), ("127.8.9.1", True), ("localhost:1", True), ("[::1]:5000", True),
     ("10.0.0.1:5000", False), ("example.org", False), ("localhost.evil.org", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_store_satisfies_the_protocol(tmp_path: Path) -> None:
    from modelops_bundle.stores import BundleStore

    assert isinstance(LayoutStore(tmp_path), BundleStore)
    assert isinstance(RegistryStore("127.0.0.1:5000"), BundleStore)
    assert os.listdir(tmp_path) == []
