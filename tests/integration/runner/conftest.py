"""Fixtures for the runner's integration tests (helpers are in runner_jobkit)."""

from __future__ import annotations

from pathlib import Path

import pytest
from runner_jobkit import JobSite

from modelops_runtime.processes import NatsServer

__all__ = ["site"]


@pytest.fixture
def site(tmp_path: Path, nats_server: NatsServer) -> JobSite:
    """The embedded stack's places under `tmp_path` (OCI layout, blob folder), on the session's
    nats-server; a test on a registry or S3 makes its own JobSite."""
    return JobSite(tmp_path, nats_server.url)
