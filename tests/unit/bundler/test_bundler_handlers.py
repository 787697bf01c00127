"""Bundler decisions against a real OCI image-layout store in a temporary folder (no server)
and in-memory KV."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelops_bundle.oci import compose_bundle
from modelops_bundle.push import upload_missing_blobs
from modelops_bundle.registry_file import dump_registry
from modelops_bundle.stores import LayoutStore, RegistryStore
from modelops_bundler.errors import Rejected, Transient
from modelops_bundler.handlers import build_for_registration, on_build_bundle
from modelops_bundler.records import digest_key, latest_key
from modelops_contracts import (
    BuildBundle,
    BundleFailed,
    BundlePushed,
    ModelEntry,
    ModelRegistered,
    Registry,
)
from modelops_runtime.processes import free_port
from tests.unit.bundle.oci_helpers import make_project

from .fakes import MemoryBundleIndex, MemoryRegistries

REPO = "test/sir"


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, Registry]:
    root = tmp_path / "project"
    return root, make_project(root)


@pytest.fixture
def store(tmp_path: Path) -> LayoutStore:
    return LayoutStore(tmp_path / "oci")


def uploaded(project: tuple[Path, Registry], store: LayoutStore) -> Registry:
    root, registry = project
    upload_missing_blobs(root, registry, store, repository=REPO)
    return registry


def build(registry: Registry | None = None, **kw: object) -> BuildBundle:
    return BuildBundle(
        correlation_id="corr-7", project="demo", repository=REPO, registry=registry, **kw
    )


async def test_build_publishes_config_and_manifest_and_records_the_bundle(
    project: tuple[Path, Registry], store: LayoutStore
) -> None:
    registry = uploaded(project, store)
    index = MemoryBundleIndex()
    cmd = build(registry)

    [event] = await on_build_bundle(
        cmd, models=MemoryRegistries(), store=store, index=index, clock=lambda: "T"
    )

    assert isinstance(event, BundlePushed)
    expected = compose_bundle(registry, registry_yaml=dump_registry(registry)).manifest_digest
    assert event.digest == expected  # same bytes as the CLI's direct push would write
    assert event.bundle_ref == f"local/{REPO}@{expected}"
    assert event.models == {"sir": registry.models["sir"].digest}
    assert (event.tag, event.correlation_id, event.id) == ("latest", "corr-7", f"{cmd.id}.pushed")
    assert store.resolve(REPO, "latest") == expected
    record = index.records[digest_key(expected)]
    assert index.records[latest_key("demo")] == record
    assert (record.bundle_ref, record.pushed_at, record.correlation_id) == (
        event.bundle_ref,
        "T",
        "corr-7",
    )


async def test_tag_is_set_too(project: tuple[Path, Registry], store: LayoutStore) -> None:
    registry = uploaded(project, store)

    [event] = await on_build_bundle(
        build(registry, tag="v1"), models=MemoryRegistries(), store=store, index=MemoryBundleIndex()
    )

    assert event.tag == "v1"
    assert store.resolve(REPO, "v1") == event.digest


async def test_blobs_not_uploaded_fail_the_build_naming_the_files(
    project: tuple[Path, Registry], store: LayoutStore
) -> None:
    _, registry = project
    index = MemoryBundleIndex()

    [event] = await on_build_bundle(
        build(registry), models=MemoryRegistries(), store=store, index=index
    )

    assert isinstance(event, BundleFailed)
    assert event.missing_blobs == sorted(registry.files())
    assert "not in test/sir" in event.reason
    assert index.records == {}


async def test_without_a_registry_the_registrars_copy_is_built(
    project: tuple[Path, Registry], store: LayoutStore
) -> None:
    registry = uploaded(project, store)

    [event] = await on_build_bundle(
        build(None),
        models=MemoryRegistries({"demo": registry}),
        store=store,
        index=MemoryBundleIndex(),
    )

    assert isinstance(event, BundlePushed)
    assert event.models == {"sir": registry.models["sir"].digest}


async def test_unknown_project_fails_the_build(store: LayoutStore) -> None:
    [event] = await on_build_bundle(
        build(None), models=MemoryRegistries(), store=store, index=MemoryBundleIndex()
    )

    assert isinstance(event, BundleFailed)
    assert "has no registered models" in event.reason


async def test_models_selects_a_subset(project: tuple[Path, Registry], store: LayoutStore) -> None:
    registry = uploaded(project, store)
    sir = registry.models["sir"]
    other = ModelEntry(id="other", entrypoint="model:Other", path=sir.path, code=sir.code)
    both = registry.with_model(other)

    [event] = await on_build_bundle(
        build(both, models=["other"]),
        models=MemoryRegistries(),
        store=store,
        index=MemoryBundleIndex(),
    )

    assert list(event.models) == ["other"]
    with pytest.raises(Rejected) as caught:
        await on_build_bundle(
            build(both, models=["nope"]),
            models=MemoryRegistries(),
            store=store,
            index=MemoryBundleIndex(),
        )
    assert caught.value.field == "models"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"repository": "Has Spaces"}, "repository"),
        ({"tag": "no/slash"}, "tag"),
        ({"project": "a b"}, "project"),
    ],
)
async def test_unusable_names_are_rejected(changes: dict, field: str, store: LayoutStore) -> None:
    cmd = BuildBundle(
        **{"correlation_id": "c", "project": "demo", "repository": REPO, **changes}  # type: ignore[arg-type]
    )

    with pytest.raises(Rejected) as caught:
        await on_build_bundle(
            cmd, models=MemoryRegistries(), store=store, index=MemoryBundleIndex()
        )

    assert caught.value.field == field


async def test_unreachable_store_is_transient(project: tuple[Path, Registry]) -> None:
    _, registry = project
    dead = RegistryStore(f"127.0.0.1:{free_port()}", retries=0)

    with pytest.raises(Transient, match="cannot reach registry"):
        await on_build_bundle(
            build(registry), models=MemoryRegistries(), store=dead, index=MemoryBundleIndex()
        )


async def test_unreachable_index_is_transient(
    project: tuple[Path, Registry], store: LayoutStore
) -> None:
    registry = uploaded(project, store)
    index = MemoryBundleIndex()
    index.down = True

    with pytest.raises(Transient):
        await on_build_bundle(build(registry), models=MemoryRegistries(), store=store, index=index)


def test_a_registration_builds_the_whole_project_into_its_repository(
    project: tuple[Path, Registry],
) -> None:
    _, registry = project
    model = registry.models["sir"]
    event = ModelRegistered(
        correlation_id="c", project="demo", model=model, model_digest=model.digest, revision=3
    )

    cmd = build_for_registration(event)

    assert (cmd.project, cmd.repository, cmd.registry, cmd.correlation_id) == (
        "demo",
        "demo",
        None,
        "c",
    )
    assert cmd.id == f"{event.id}.build"
    assert build_for_registration(event, repository="team/sir").repository == "team/sir"
