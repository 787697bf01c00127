"""Push and pull bundles against a real OCI registry (Debian's docker-registry)."""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import structlog

from modelops_bundle.errors import (
    IntegrityError,
    StoreAuthError,
    StoreError,
    StoreUnavailable,
    UnsafePath,
)
from modelops_bundle.oci import sha256_digest
from modelops_bundle.pull import pull_bundle, read_bundle_index
from modelops_bundle.push import push_bundle, upload_missing_blobs
from modelops_bundle.registry_file import dump_registry
from modelops_bundle.stores import RegistryStore, open_store
from modelops_runtime.processes import free_port
from tests.support.servers import OciRegistry
from tests.unit.bundle.oci_helpers import make_project, registry_for, write_big_file

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _no_ambient_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests must not pick up the machine's docker logins or registry env."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    monkeypatch.delenv("MODELOPS_REGISTRY_USERNAME", raising=False)
    monkeypatch.delenv("MODELOPS_REGISTRY_PASSWORD", raising=False)


@pytest.fixture
def repo() -> str:
    return f"test/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(oci_registry: OciRegistry) -> RegistryStore:
    return RegistryStore(oci_registry.host, retries=1, backoff=0.01, chunk_size=64 << 10)


def _push(root: Path, registry: Any, store: Any, repo: str) -> Any:
    return push_bundle(
        root, registry, store, repository=repo, registry_yaml=dump_registry(registry)
    )


def test_push_then_repush_after_one_change_sends_only_that_blob(
    tmp_path: Path, store: RegistryStore, repo: str
) -> None:
    root = tmp_path / "project"
    registry = make_project(root)
    big = os.urandom(300 << 10)  # > chunk_size: goes through chunked PATCH uploads
    (root / "data" / "big.bin").write_bytes(big)
    registry = registry_for(root, [*sorted(registry.files()), "data/big.bin"])

    progress: list[int] = []
    first = push_bundle(
        root, registry, store, repository=repo, registry_yaml=dump_registry(registry),
        progress=progress.append,
    )  # fmt: skip
    assert sum(progress) == first.upload.bytes_sent and len(progress) > 5  # chunks reported
    unique_blobs = {f.digest: f.size for f in registry.files().values()}
    assert first.upload.bytes_sent == sum(unique_blobs.values())
    assert sorted(first.upload.uploaded) == sorted(unique_blobs)
    assert first.bundle.bundle_ref == f"{store.ref_host}/{repo}@{first.bundle.digest}"
    assert store.resolve(repo, "latest") == first.bundle.digest

    changed = b"a,b\n1,2\n3,4\n"
    (root / "data" / "contacts.csv").write_bytes(changed)
    registry2 = registry_for(root, sorted(registry.files()))
    second = _push(root, registry2, store, repo)
    assert second.upload.uploaded == [sha256_digest(changed)]
    assert second.upload.bytes_sent == len(changed)
    assert len(second.upload.skipped) == len(first.upload.uploaded) - 1  # all but the old csv
    assert second.bundle.digest != first.bundle.digest
    assert store.resolve(repo, "latest") == second.bundle.digest

    tree = pull_bundle(store, second.bundle.bundle_ref, cache_dir=tmp_path / "cache")
    assert (tree / "data" / "contacts.csv").read_bytes() == changed
    assert (tree / "data" / "big.bin").read_bytes() == big
    old = pull_bundle(store, first.bundle.bundle_ref, cache_dir=tmp_path / "cache")
    assert (old / "data" / "contacts.csv").read_bytes() == b"a,b\n1,2\n"


def test_pull_verifies_and_materializes(tmp_path: Path, store: RegistryStore, repo: str) -> None:
    root = tmp_path / "project"
    registry = make_project(root)
    bundle = _push(root, registry, store, repo).bundle
    cache = tmp_path / "cache"
    tree = pull_bundle(store, bundle.bundle_ref, cache_dir=cache)
    for path in registry.files():
        assert (tree / path).read_bytes() == (root / path).read_bytes()
    assert os.listdir(cache) == [bundle.digest[7:]]
    index = read_bundle_index(store, bundle.bundle_ref, entrypoint="model:SIR")
    assert index.models["sir"].digest == registry.models["sir"].digest


def test_corrupted_blob_in_registry_is_refused_and_cache_stays_empty(
    tmp_path: Path, store: RegistryStore, repo: str, oci_registry: OciRegistry
) -> None:
    root = tmp_path / "project"
    registry = make_project(root)
    bundle = _push(root, registry, store, repo).bundle
    victim = registry.files()["data/nonce.bin"]  # unique to this test: corrupting it hurts no one
    blob = oci_registry.blob_path(victim.digest)
    assert blob.read_bytes() == (root / "data" / "nonce.bin").read_bytes()
    blob.write_bytes(bytes(b ^ 0xFF for b in blob.read_bytes()))  # same size, other bytes

    cache = tmp_path / "cache"
    with pytest.raises(IntegrityError, match=r"data/nonce\.bin") as info:
        pull_bundle(store, bundle.bundle_ref, cache_dir=cache)
    assert victim.digest in str(info.value)
    assert os.listdir(cache) == []


def test_index_with_dotdot_is_refused_at_pull(
    tmp_path: Path, store: RegistryStore, repo: str
) -> None:
    payload = os.urandom(16)
    digest = sha256_digest(payload)
    store.push_blob_bytes(repo, digest, payload)
    config = json.dumps(
        {"project": "p", "files": [{"path": "../x", "digest": digest, "size": 16}], "models": {}}
    ).encode()
    store.push_blob_bytes(repo, sha256_digest(config), config)
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
            "layers": [
                {
                    "mediaType": "application/vnd.modelops.file.v1",
                    "digest": digest,
                    "size": 16,
                    "annotations": {"org.opencontainers.image.title": "x"},
                }
            ],
        }
    ).encode()
    manifest_digest = store.push_manifest(repo, manifest, sha256_digest(manifest))
    cache = tmp_path / "cache"
    with pytest.raises(UnsafePath, match=r"'\.\./x'"):
        pull_bundle(store, f"{store.ref_host}/{repo}@{manifest_digest}", cache_dir=cache)
    assert os.listdir(cache) == []


def test_stopped_registry_gives_store_unavailable_after_bounded_retries(tmp_path: Path) -> None:
    host = f"127.0.0.1:{free_port()}"  # nothing listens here
    store = RegistryStore(host, retries=2, backoff=0.01)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="after 3 attempts") as info:
        store.blob_exists("demo/sir", sha256_digest(b""))
    assert time.monotonic() - started < 5
    assert host in str(info.value)
    assert "is it running? check --registry / MODELOPS_REGISTRY" in str(info.value)

    root = tmp_path / "project"
    registry = make_project(root)
    with pytest.raises(StoreUnavailable):
        upload_missing_blobs(root, registry, store, repository="demo/sir")
    cache = tmp_path / "cache"
    with pytest.raises(StoreUnavailable):
        pull_bundle(store, f"{host}/demo/sir@{sha256_digest(b'x')}", cache_dir=cache)
    assert os.listdir(cache) == []


def test_tls_to_a_plain_http_registry_fails_at_once_with_a_hint(oci_registry: OciRegistry) -> None:
    store = RegistryStore(oci_registry.host, insecure=False, retries=5, backoff=1.0)
    started = time.monotonic()
    with pytest.raises(StoreError, match="TLS") as info:
        store.blob_exists("demo/sir", sha256_digest(b""))
    assert not isinstance(info.value, StoreUnavailable)
    assert "--insecure" in str(info.value)
    assert time.monotonic() - started < 1.0  # no retries: TLS errors are not transient


def _pull_in_child(host: str, ref: str, cache: str, barrier: Any, results: Any) -> None:
    store = RegistryStore(host, retries=1, backoff=0.01)
    barrier.wait(timeout=30)
    with structlog.testing.capture_logs() as logs:
        path = pull_bundle(store, ref, cache_dir=cache)
    results.put((str(path), any(e["event"] == "bundle.materialized" for e in logs)))


def test_concurrent_pulls_from_several_processes_share_one_tree(
    tmp_path: Path, store: RegistryStore, repo: str, oci_registry: OciRegistry
) -> None:
    root = tmp_path / "project"
    registry = make_project(root)
    write_big_file(root / "data" / "big.bin", 8 << 20)  # makes the pulls overlap
    registry = registry_for(root, [*sorted(registry.files()), "data/big.bin"])
    bundle = _push(root, registry, store, repo).bundle
    cache = tmp_path / "cache"
    ctx = multiprocessing.get_context("fork")
    n = 4
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [
        ctx.Process(
            target=_pull_in_child,
            args=(oci_registry.host, bundle.bundle_ref, str(cache), barrier, results),
        )
        for _ in range(n)
    ]
    for p in procs:
        p.start()
    for p in procs:  # a crashed child fails the test at once instead of at a queue timeout
        p.join(timeout=60)
        assert p.exitcode == 0
    outcomes = [results.get(timeout=5) for _ in procs]
    assert {path for path, _ in outcomes} == {str(cache / bundle.digest[7:])}
    assert sum(materialized for _, materialized in outcomes) == 1
    assert os.listdir(cache) == [bundle.digest[7:]]
    assert (cache / bundle.digest[7:] / "data" / "big.bin").stat().st_size == 8 << 20


_MEASURE = r"""
import json, sys
from modelops_bundle.stores import RegistryStore
from modelops_bundle.pull import pull_bundle
from modelops_bundle.push import push_bundle
from modelops_bundle.registry_file import dump_registry
from modelops_contracts import ModelEntry, Registry, TrackedFile

def status_kib(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])

host, root, digest, size, repo, cache = sys.argv[1:7]
files = [TrackedFile(path="big.bin", digest=digest, size=int(size))]
reg = Registry(project="mem", models={"m": ModelEntry(
    id="m", entrypoint="model:M", path="big.bin", code=files)})
store = RegistryStore(host, chunk_size=4 << 20)
store.blob_exists(repo, digest)  # warm up the session before measuring
out = {}
for step in ("push", "pull"):
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
    base = status_kib("VmRSS")
    if step == "push":
        bundle = push_bundle(root, reg, store, repository=repo, registry_yaml=dump_registry(reg))
    else:
        pull_bundle(store, bundle.bundle.bundle_ref, cache_dir=cache)
    out[step] = (status_kib("VmHWM") - base) * 1024
print(json.dumps(out))
"""


def test_large_file_push_and_pull_keep_memory_flat(
    tmp_path: Path, oci_registry: OciRegistry, repo: str
) -> None:
    """A 64 MiB file moves with peak RSS growth far below its size (no whole-file reads).

    Measured in a fresh process with the kernel's peak-RSS counter reset before each step.
    (200 MiB measured by hand: growth about 11 MiB with 4 MiB chunks, 16 MiB with 8 MiB.)
    """
    size = 64 << 20
    root = tmp_path / "project"
    digest = write_big_file(root / "big.bin", size)
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, oci_registry.host, str(root), digest, str(size), repo,
         str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    growth = json.loads(proc.stdout.strip().splitlines()[-1])
    assert growth["push"] < 24 << 20, growth
    assert growth["pull"] < 24 << 20, growth
    pulled = next((tmp_path / "cache").iterdir()) / "big.bin"
    assert pulled.stat().st_size == size


class _AuthRegistry(OciRegistry):
    """docker-registry with htpasswd auth (user alice, password s3cret; bcrypt cost 4)."""

    HTPASSWD = "alice:$2b$04$XAx4IildCoYYoAQaHtwtguD6.RKBGo8zSkMkTru9zVryaxGqPD8Vm\n"

    def config_text(self) -> str:
        htpasswd = self._run_dir / "htpasswd"
        htpasswd.parent.mkdir(parents=True, exist_ok=True)
        htpasswd.write_text(self.HTPASSWD)
        return super().config_text() + (
            f"auth:\n  htpasswd:\n    realm: modelops-test\n    path: {htpasswd}\n"
        )

    def start(self) -> _AuthRegistry:
        from modelops_runtime.processes import ManagedProcess, find_executable, http_probe

        binary = find_executable("docker-registry", hint="apt-get install docker-registry")
        self.root.mkdir(parents=True, exist_ok=True)
        self._run_dir.mkdir(parents=True, exist_ok=True)
        config = self._run_dir / "config.yml"
        config.write_text(self.config_text())
        self._process = ManagedProcess(
            "docker-registry-auth",
            [binary, "serve", config],
            log_dir=self._run_dir,
            ready=http_probe(f"{self.url}/v2/", ok=lambda status: status == 401),
            start_timeout_s=20.0,
            stop_grace_s=3.0,
        ).start()
        return self


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with _AuthRegistry(tmp_path_factory.mktemp("oci-auth")) as registry:
        yield registry


def test_registry_auth(
    tmp_path: Path, auth_registry: _AuthRegistry, monkeypatch: pytest.MonkeyPatch, repo: str
) -> None:
    host = auth_registry.host
    digest = sha256_digest(b"")
    with pytest.raises(StoreAuthError, match="no credentials") as info:
        RegistryStore(host, retries=0).blob_exists(repo, digest)
    assert "docker login" in str(info.value)

    with pytest.raises(StoreAuthError):
        RegistryStore(host, retries=0, credentials=("alice", "wrong")).blob_exists(repo, digest)

    monkeypatch.setenv("MODELOPS_REGISTRY_USERNAME", "alice")
    monkeypatch.setenv("MODELOPS_REGISTRY_PASSWORD", "s3cret")
    root = tmp_path / "project"
    registry = make_project(root)
    bundle = _push(root, registry, open_store(host), repo).bundle
    monkeypatch.delenv("MODELOPS_REGISTRY_USERNAME")
    monkeypatch.delenv("MODELOPS_REGISTRY_PASSWORD")

    config_dir = tmp_path / "docker-config"
    config_dir.mkdir()
    token = base64.b64encode(b"alice:s3cret").decode()
    (config_dir / "config.json").write_text(json.dumps({"auths": {host: {"auth": token}}}))
    tree = pull_bundle(open_store(host), bundle.bundle_ref, cache_dir=tmp_path / "cache")
    assert (tree / "model.py").read_bytes() == (root / "model.py").read_bytes()
