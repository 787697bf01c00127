"""The bundler service against real servers: nats-server, Debian's docker-registry and an OCI
image-layout folder. It writes config + manifest only; the file blobs were uploaded before."""

from __future__ import annotations

import uuid
from pathlib import Path

import nats
import pytest

from modelops_bundle.push import upload_missing_blobs
from modelops_bundle.stores import LayoutStore, RegistryStore
from modelops_bundler import app as bundler_app
from modelops_bundler.records import BundleRecord, digest_key, latest_key
from modelops_cli.bus import request
from modelops_contracts import (
    BuildBundle,
    BundleFailed,
    BundlePushed,
    CommandRejected,
    RegisterModel,
    Registry,
    decode,
)
from modelops_contracts.subjects import KV_BUNDLES
from modelops_registrar import app as registrar_app
from modelops_runtime.processes import NatsServer
from tests.integration.bundler.services import running_services
from tests.support.servers import OciRegistry
from tests.unit.bundle.oci_helpers import make_project

pytestmark = pytest.mark.integration

ANSWERS = (BundlePushed, BundleFailed, CommandRejected)


@pytest.fixture(autouse=True)
def _no_ambient_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    monkeypatch.delenv("MODELOPS_REGISTRY_USERNAME", raising=False)
    monkeypatch.delenv("MODELOPS_REGISTRY_PASSWORD", raising=False)


@pytest.fixture
def repo() -> str:
    return f"test/{uuid.uuid4().hex[:12]}"


def build(registry: Registry | None, repo: str, **kw: object) -> BuildBundle:
    return BuildBundle(
        correlation_id=f"corr-{uuid.uuid4().hex[:6]}",
        project="demo",
        repository=repo,
        registry=registry,
        **kw,
    )


async def bundle_record(url: str, key: str) -> BundleRecord:
    nc = await nats.connect(url)
    try:
        entry = await (await nc.jetstream().key_value(KV_BUNDLES)).get(key)
        return decode(entry.value, BundleRecord)
    finally:
        await nc.close()


async def test_build_pushes_to_the_registry_and_records_the_bundle(
    fresh_nats: NatsServer, oci_registry: OciRegistry, tmp_path: Path, repo: str
) -> None:
    registry = make_project(tmp_path / "project")
    store = RegistryStore(oci_registry.host, retries=1, backoff=0.01)
    upload_missing_blobs(tmp_path / "project", registry, store, repository=repo)
    settings = bundler_app.Settings(nats_url=fresh_nats.url, bundle_store=oci_registry.host)

    async with running_services(bundler=settings):
        answer = await request(
            fresh_nats.url, build(registry, repo, tag="v1"), answers=ANSWERS, timeout=20
        )

    assert isinstance(answer, BundlePushed), answer
    assert answer.bundle_ref == f"{oci_registry.host}/{repo}@{answer.digest}"
    assert store.resolve(repo, "v1") == answer.digest
    by_digest = await bundle_record(fresh_nats.url, digest_key(answer.digest))
    assert by_digest == await bundle_record(fresh_nats.url, latest_key("demo"))
    assert (by_digest.bundle_ref, by_digest.models) == (answer.bundle_ref, answer.models)


async def test_blobs_never_uploaded_fail_the_build_naming_them(
    fresh_nats: NatsServer, oci_registry: OciRegistry, tmp_path: Path, repo: str
) -> None:
    registry = make_project(tmp_path / "project")
    settings = bundler_app.Settings(nats_url=fresh_nats.url, bundle_store=oci_registry.host)

    async with running_services(bundler=settings):
        answer = await request(fresh_nats.url, build(registry, repo), answers=ANSWERS, timeout=20)

    assert isinstance(answer, BundleFailed)
    assert answer.missing_blobs == sorted(registry.files())


async def test_invalid_build_commands_are_rejected_and_the_service_keeps_running(
    fresh_nats: NatsServer, tmp_path: Path, repo: str
) -> None:
    layout = tmp_path / "oci"
    registry = make_project(tmp_path / "project")
    upload_missing_blobs(tmp_path / "project", registry, LayoutStore(layout), repository=repo)
    settings = bundler_app.Settings(nats_url=fresh_nats.url, bundle_store=f"oci-layout:{layout}")

    async with running_services(bundler=settings):
        bad_repo = await request(
            fresh_nats.url, build(registry, "Not A Repo"), answers=ANSWERS, timeout=20
        )
        bad_tag = await request(
            fresh_nats.url, build(registry, repo, tag="a/b"), answers=ANSWERS, timeout=20
        )
        good = await request(fresh_nats.url, build(registry, repo), answers=ANSWERS, timeout=20)

    assert isinstance(bad_repo, CommandRejected) and bad_repo.field == "repository"
    assert isinstance(bad_tag, CommandRejected) and bad_tag.field == "tag"
    assert isinstance(good, BundlePushed)
    assert good.bundle_ref == f"local/{repo}@{good.digest}"


async def test_build_on_register_bundles_the_registrars_copy(
    fresh_nats: NatsServer, tmp_path: Path
) -> None:
    layout = tmp_path / "oci"
    registry = make_project(tmp_path / "project")
    upload_missing_blobs(tmp_path / "project", registry, LayoutStore(layout), repository="demo")
    bundler = bundler_app.Settings(
        nats_url=fresh_nats.url, bundle_store=f"oci-layout:{layout}", build_on_register=True
    )
    registrar = registrar_app.Settings(nats_url=fresh_nats.url)
    cmd = RegisterModel(correlation_id="corr-auto", project="demo", model=registry.models["sir"])

    async with running_services(registrar=registrar, bundler=bundler):
        answer = await request(
            fresh_nats.url, cmd, answers=(BundlePushed, BundleFailed), timeout=20
        )

    assert isinstance(answer, BundlePushed), answer
    assert answer.repository == "demo"
    assert answer.models == {"sir": registry.models["sir"].digest}
    assert LayoutStore(layout).resolve("demo", "latest") == answer.digest
