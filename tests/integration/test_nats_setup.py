"""ensure_jetstream against a real nats-server: declared settings, idempotence, updates, errors."""

from __future__ import annotations

import time

import nats
import pytest
from nats.js.api import RetentionPolicy, StorageType, StreamConfig

from modelops_contracts import subjects
from modelops_runtime.nats_setup import (
    COMMAND_MAX_AGE_S,
    DUPLICATE_WINDOW_S,
    EVENT_MAX_AGE_S,
    JetStreamSetupError,
    NatsUnavailable,
    connect,
    ensure_jetstream,
    ensure_kv,
    ensure_stream,
    kv_configs,
    stream_configs,
)
from modelops_runtime.processes import free_port

DAY_S = 24 * 3600.0


async def test_ensure_jetstream_twice_changes_nothing(nats_client: nats.NATS):
    js = nats_client.jetstream()
    await ensure_jetstream(js)
    before = {s.config.name: s.state.first_seq for s in await js.streams_info()}

    await ensure_jetstream(js)

    assert [await ensure_stream(js, cfg) for cfg in stream_configs()] == ["unchanged"] * 3
    assert [await ensure_kv(js, kv) for kv in kv_configs()] == ["unchanged"] * 3
    after = {s.config.name: s.state.first_seq for s in await js.streams_info()}
    assert after == before


@pytest.mark.parametrize(
    ("stream", "subject", "retention", "max_age"),
    [
        (
            subjects.COMMANDS_STREAM,
            subjects.COMMAND_SUBJECTS,
            RetentionPolicy.LIMITS,
            COMMAND_MAX_AGE_S,
        ),
        (subjects.EVENTS_STREAM, subjects.EVENT_SUBJECTS, RetentionPolicy.LIMITS, EVENT_MAX_AGE_S),
        (subjects.TASKS_STREAM, subjects.TASK_SUBJECTS, RetentionPolicy.WORK_QUEUE, 0.0),
    ],
)
async def test_streams_are_as_declared(
    nats_client: nats.NATS, stream: str, subject: str, retention: RetentionPolicy, max_age: float
):
    js = nats_client.jetstream()
    await ensure_jetstream(js)
    cfg = (await js.stream_info(stream)).config
    assert cfg.subjects == [subject]
    assert cfg.retention == retention
    assert cfg.storage == StorageType.FILE
    assert cfg.duplicate_window == DUPLICATE_WINDOW_S == 120.0
    assert cfg.max_age == max_age
    assert COMMAND_MAX_AGE_S == 7 * DAY_S and EVENT_MAX_AGE_S == 30 * DAY_S


@pytest.mark.parametrize(
    ("bucket", "history"),
    [(subjects.KV_MODELS, 16), (subjects.KV_BUNDLES, 1), (subjects.KV_JOBS, 1)],
)
async def test_kv_buckets_are_as_declared(nats_client: nats.NATS, bucket: str, history: int):
    js = nats_client.jetstream()
    await ensure_jetstream(js)
    kv = await js.key_value(bucket)
    status = await kv.status()
    assert status.history == history
    assert (await js.stream_info(f"KV_{bucket}")).config.storage == StorageType.FILE
    revision = await kv.put("probe", b"1")
    assert (await kv.get("probe")).revision == revision


async def test_existing_stream_and_bucket_with_other_settings_are_updated(nats_client: nats.NATS):
    js = nats_client.jetstream()
    await ensure_jetstream(js)
    await ensure_jetstream(js, event_max_age_s=DAY_S)  # a deployment that keeps one day
    assert (await js.stream_info(subjects.EVENTS_STREAM)).config.max_age == DAY_S
    kv_stream = f"KV_{subjects.KV_MODELS}"
    drifted = (await js.stream_info(kv_stream)).config.evolve(max_msgs_per_subject=3)
    await js.update_stream(drifted)

    await ensure_jetstream(js)

    assert (await js.stream_info(subjects.EVENTS_STREAM)).config.max_age == EVENT_MAX_AGE_S
    assert (await (await js.key_value(subjects.KV_MODELS)).status()).history == 16


async def test_a_change_the_server_refuses_names_the_stream(nats_client: nats.NATS):
    js = nats_client.jetstream()
    name = "MODELOPS_TEST_RETENTION"
    await js.add_stream(name=name, subjects=["modelops-test.retention.>"], retention="workqueue")
    try:
        with pytest.raises(JetStreamSetupError) as info:
            await ensure_stream(
                js,
                StreamConfig(
                    name=name,
                    subjects=["modelops-test.retention.>"],
                    retention=RetentionPolicy.LIMITS,
                ),
            )
    finally:
        await js.delete_stream(name)
    assert name in str(info.value) and "retention" in str(info.value)
    assert f"nats stream rm {name}" in str(info.value)


async def test_unreachable_server_raises_nats_unavailable_fast():
    url = f"nats://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(NatsUnavailable) as info:
        await connect(url, name="test", first_connect_timeout_s=0.5)
    assert time.monotonic() - started < 2.0
    assert url in str(info.value)
    assert "start it with 'modelops up' or set MODELOPS_NATS_URL" in str(info.value)
