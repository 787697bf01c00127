"""Each service, run as `python -m modelops_<svc>`, serves /livez, /readyz and /metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from modelops_runtime.processes import NatsServer, free_port
from tests.support.waiting import wait_while_running

pytestmark = pytest.mark.integration


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _wait_ready(url: str, proc: subprocess.Popen, deadline_s: float = 30.0) -> dict:
    last: list[tuple[int, bytes]] = []

    def ready() -> bool:
        try:
            last.append(_get(url))
        except OSError:  # not listening yet
            return False
        return last[-1][0] == 200

    def what() -> str:
        return f"{url} to be ready; last answer {last[-1:]}"

    wait_while_running(ready, proc, what, timeout_s=deadline_s, poll_s=0.1)
    return json.loads(last[-1][1])


@pytest.mark.parametrize("service", ["registrar", "bundler", "submitter"])
def test_service_health_endpoints(service: str, tmp_path: Path) -> None:
    # A server of its own: durable consumers left by other tests with other settings must not
    # decide whether this service starts.
    with NatsServer(tmp_path / "nats") as nats_server:
        _check_service(service, nats_server, tmp_path)


def _check_service(service: str, nats_server: NatsServer, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "MODELOPS_NATS_URL": nats_server.url,
        "MODELOPS_HEALTH_PORT": str(port),
        "MODELOPS_HEALTH_HOST": "127.0.0.1",
        "MODELOPS_BUNDLE_STORE": f"oci-layout:{tmp_path / 'oci'}",
        "MODELOPS_LOG_FORMAT": "json",
        "MODELOPS_BLOB_STORE": (tmp_path / "blobs").as_uri(),
        "MODELOPS_STATE_DIR": str(tmp_path / "state"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", f"modelops_{service}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        ready = _wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
        assert set(ready["checks"]) >= {"nats", "jetstream"}, ready
        status, _ = _get(f"http://127.0.0.1:{port}/livez")
        assert status == 200
        status, metrics = _get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and b"# TYPE" in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()[-2000:]
