"""Server fixtures for the whole suite, registered by the root conftest.

Session-scoped servers start lazily (only when a test asks for one) and stop at session end; a
missing binary is a test error naming what to install, never a skip. Any test that uses one of
them, directly or through another fixture, is marked `integration` at collection.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import nats
import pytest

from modelops_runtime.nats_setup import connect
from modelops_runtime.processes import NatsServer
from tests.support.deploy_files import NATS_CONFIG, NATS_USERS, nats_password_env, nats_passwords
from tests.support.servers import OciRegistry, SeaweedS3

__all__ = [
    "SERVER_FIXTURES",
    "nats_client",
    "nats_server",
    "oci_registry",
    "passwords",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "s3_bucket",
    "s3_server",
    "secured_nats",
]

SERVER_FIXTURES = frozenset({"nats_server", "oci_registry", "s3_server", "secured_nats"})
LOOPBACK = ("127.0.0.1", "localhost")


def pytest_configure(config: pytest.Config) -> None:
    """Keep loopback traffic off any HTTP proxy a CI machine sets (requests, botocore obey it)."""
    for var in ("NO_PROXY", "no_proxy"):
        current = [h for h in os.environ.get(var, "").split(",") if h]
        os.environ[var] = ",".join([*current, *(h for h in LOOPBACK if h not in current)])


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs a real server `integration` (fixture closure included)."""
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """`nats-server -js` with a file store; tests connect to `nats_server.url`."""
    with NatsServer(tmp_path_factory.mktemp("nats")) as server:
        yield server


@pytest.fixture(scope="module")
def passwords() -> dict[str, str]:
    """A fresh NATS password per deploy user (NATS_USERS) for `secured_nats`."""
    return nats_passwords(*NATS_USERS)


@pytest.fixture(scope="module")
def secured_nats(
    tmp_path_factory: pytest.TempPathFactory, passwords: dict[str, str]
) -> Iterator[NatsServer]:
    """nats-server with deploy/nats/nats-server.conf, one per module (tests there change what
    its users hold); the `passwords` reach it through the environment."""
    with pytest.MonkeyPatch.context() as mp:
        for user, password in passwords.items():
            mp.setenv(nats_password_env(user), password)
        with NatsServer(tmp_path_factory.mktemp("nats-secured"), config_file=NATS_CONFIG) as server:
            yield server


@pytest.fixture(scope="session")
def oci_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OciRegistry]:
    """Debian's docker-registry: `.host` ("127.0.0.1:PORT"), `.root`, `.blob_path(digest)`."""
    with OciRegistry(tmp_path_factory.mktemp("oci-registry")) as registry:
        yield registry


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """SeaweedFS S3: `.endpoint_url`, `.access_key`, `.secret_key`, `await .make_bucket(name)`."""
    with SeaweedS3(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture
async def s3_bucket(s3_server: SeaweedS3) -> AsyncIterator[str]:
    """A fresh, uniquely named, empty bucket (left in place: the data dir is temporary)."""
    yield await s3_server.make_bucket(f"test-{uuid.uuid4().hex[:20]}")


@pytest.fixture
async def nats_client(nats_server: NatsServer) -> AsyncIterator[nats.NATS]:
    """A connected nats-py client on the session's server, closed after the test."""
    nc = await connect(nats_server.url, name="pytest")
    try:
        yield nc
    finally:
        await nc.close()
