"""HealthServer with real NATS checks: ready while NATS and our streams are there, 503 when not.

Uses its own nats-server (not the session one) because it stops and restarts it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from modelops_contracts import subjects as s
from modelops_runtime.health import HealthServer, jetstream_ready_check, nats_ready_check
from modelops_runtime.metrics import Metrics, QueueDepthPoller
from modelops_runtime.nats_setup import connect, ensure_jetstream
from modelops_runtime.processes import NatsServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

DEADLINE_S = 15.0
ALL_KV = [s.KV_MODELS, s.KV_BUNDLES, s.KV_JOBS]
ALL_STREAMS = [s.COMMANDS_STREAM, s.EVENTS_STREAM, s.TASKS_STREAM]


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[NatsServer]:
    with NatsServer(tmp_path / "nats") as server:
        yield server


@pytest.fixture
async def nc(own_nats: NatsServer) -> AsyncIterator[nats.NATS]:
    client = await connect(own_nats.url, name="health-test", reconnect_time_wait_s=0.1)
    try:
        yield client
    finally:
        await client.close()


async def wait_status(http: aiohttp.ClientSession, url: str, status: int) -> dict:
    """Poll `url` until it answers `status` (probes are polled the same way by the kubelet)."""
    last: list[tuple[int, dict]] = []

    async def answered() -> bool:
        async with http.get(url) as resp:
            last.append((resp.status, await resp.json()))
        return last[-1][0] == status

    await wait_for(
        answered, lambda: f"{url} to answer {status}; last {last[-1:]}", timeout_s=DEADLINE_S
    )
    return last[-1][1]


async def test_ready_follows_nats_down_and_back_up(own_nats: NatsServer, nc: nats.NATS):
    js = nc.jetstream(timeout=1.0)
    await ensure_jetstream(js)
    checks = {
        "nats": nats_ready_check(nc),
        "jetstream": jetstream_ready_check(js, streams=ALL_STREAMS, kv=ALL_KV),
    }
    async with (
        HealthServer(port=0, ready_checks=checks, service="submitter", check_timeout_s=2) as hs,
        aiohttp.ClientSession() as http,
    ):
        body = await wait_status(http, f"{hs.url}/readyz", 200)
        assert body["checks"] == {"nats": "ok", "jetstream": "ok"}

        own_nats.stop()
        body = await wait_status(http, f"{hs.url}/readyz", 503)
        assert body["checks"]["nats"].startswith("NATS connection")
        assert body["checks"]["jetstream"] != "ok"
        async with http.get(f"{hs.url}/livez") as resp:  # a NATS outage is no reason to restart
            assert resp.status == 200

        # Same port, same store: the client reconnects and readiness comes back on its own.
        with NatsServer(own_nats.store_dir, port=own_nats.port):
            body = await wait_status(http, f"{hs.url}/readyz", 200)
            assert body["checks"] == {"nats": "ok", "jetstream": "ok"}


async def test_missing_streams_make_it_not_ready_and_say_which(nc: nats.NATS):
    js = nc.jetstream(timeout=1.0)
    check = jetstream_ready_check(js, streams=[s.TASKS_STREAM], kv=[s.KV_JOBS])
    async with (
        HealthServer(port=0, ready_checks={"jetstream": check}) as hs,
        aiohttp.ClientSession() as http,
    ):
        body = await wait_status(http, f"{hs.url}/readyz", 503)
        assert "MODELOPS_TASKS" in body["checks"]["jetstream"]
        assert "KV_modelops-jobs" in body["checks"]["jetstream"]
        await ensure_jetstream(js)
        await wait_status(http, f"{hs.url}/readyz", 200)


async def test_queue_depth_poller_sets_and_drops_series_from_consumer_info(nc: nats.NATS):
    js = nc.jetstream(timeout=2.0)
    await ensure_jetstream(js)
    job = "jobpoll1"
    consumer = f"runners-{job}"
    await js.add_consumer(
        s.TASKS_STREAM,
        ConsumerConfig(
            durable_name=consumer,
            name=consumer,
            filter_subject=s.task_subject(job),
            ack_policy=AckPolicy.EXPLICIT,
        ),
    )
    for i in range(3):
        await js.publish(s.task_subject(job), f"t{i}".encode())
    sub = await js.pull_subscribe_bind(consumer, s.TASKS_STREAM)
    held = await sub.fetch(1, timeout=5)

    m = Metrics()
    targets = [(s.TASKS_STREAM, consumer), (s.TASKS_STREAM, None)]
    poller = QueueDepthPoller(js, m.for_service("submitter"), lambda: list(targets))
    await poller.poll_once()
    text = m.render().decode()
    labels = f'consumer="{consumer}",service="submitter"'
    assert f'modelops_queue_depth{{{labels},state="pending",stream="MODELOPS_TASKS"}} 2.0' in text
    assert (
        f'modelops_queue_depth{{{labels},state="ack_pending",stream="MODELOPS_TASKS"}} 1.0' in text
    )
    assert 'state="stored",stream="MODELOPS_TASKS"} 3.0' in text

    await held[0].ack_sync()
    await js.delete_consumer(s.TASKS_STREAM, consumer)
    await poller.poll_once()  # consumer gone: its series go too (its 2 tasks stay queued)
    assert consumer not in m.render().decode()
    targets.pop(0)
    async with QueueDepthPoller(js, m.for_service("submitter"), lambda: list(targets)) as running:
        await asyncio.wait_for(running.polled.wait(), DEADLINE_S)
    assert running.rounds >= 1
    assert 'state="stored",stream="MODELOPS_TASKS"} 2.0' in m.render().decode()
