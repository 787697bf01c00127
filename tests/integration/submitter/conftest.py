"""Fixtures of the submitter's integration tests: the example bundle in the real registry, a
fresh nats-server per test (the submitter's durable consumers must not see another test's
messages), a fresh S3 bucket, and S3 credentials in the environment for local runners."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest

from modelops_runtime.blobstore import BlobStore, open_blob_store
from modelops_runtime.nats_setup import connect, ensure_jetstream
from modelops_runtime.processes import NatsServer
from modelops_submitter.launchers.local import process_start_time
from modelops_submitter.settings import Settings
from tests.integration.submitter.submitter_kit import push_example_bundle, settings_for
from tests.support.servers import OciRegistry, SeaweedS3


@pytest.fixture(scope="session")
def sir_bundle(tmp_path_factory: pytest.TempPathFactory, oci_registry: OciRegistry) -> str:
    """examples/sir's StochasticSIR pushed once per session: `host/repo@sha256:...`."""
    return push_example_bundle(tmp_path_factory.mktemp("sir-bundle"), oci_registry.host)


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[NatsServer]:
    with NatsServer(tmp_path / "nats") as server:
        yield server


@pytest.fixture
async def bus(own_nats: NatsServer) -> AsyncIterator[nats.NATS]:
    nc = await connect(own_nats.url, name="test-submitter")
    await ensure_jetstream(nc.jetstream())
    try:
        yield nc
    finally:
        await nc.close()


@pytest.fixture
def s3_keys(s3_server: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """S3 credentials in our environment: local runners inherit them, as in a deployment."""
    keys = {
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_REGION": s3_server.region,
    }
    for k, v in keys.items():
        monkeypatch.setenv(k, v)
    return keys


@pytest.fixture
def settings(
    tmp_path: Path,
    own_nats: NatsServer,
    s3_server: SeaweedS3,
    s3_bucket: str,
    oci_registry: OciRegistry,
    s3_keys: dict[str, str],
) -> Iterator[Settings]:
    settings = settings_for(
        tmp_path,
        nats_url=own_nats.url,
        s3_endpoint=s3_server.endpoint_url,
        bucket=s3_bucket,
        registry_host=oci_registry.host,
    )
    yield settings
    _stop_leftover_runners(settings.jobs_dir)


def _stop_leftover_runners(jobs_dir: Path) -> None:
    """Whatever a test did, no runner it started outlives it (checked by pid start time)."""
    for pid_file in jobs_dir.glob("*/runners.json"):
        for runner in json.loads(pid_file.read_text())["runners"]:
            if process_start_time(runner["pid"]) == runner["start"]:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(runner["pid"], signal.SIGKILL)


@pytest.fixture
async def blobs(settings: Settings) -> AsyncIterator[BlobStore]:
    store = open_blob_store(settings.blob_store, endpoint_url=settings.s3_endpoint)
    try:
        yield store
    finally:
        await store.close()
