"""The registrar service against a real nats-server: registry in JetStream KV, concurrent
registrations, invalid commands answered with CommandRejected while the service keeps running."""

from __future__ import annotations

import asyncio
import hashlib
import json

import nats
import pytest

from modelops_cli.bus import request
from modelops_contracts import (
    CommandRejected,
    ModelEntry,
    ModelRegistered,
    RegisterModel,
    Registry,
    TrackedFile,
    decode,
    decode_event,
    encode,
)
from modelops_contracts.subjects import KV_MODELS, MODEL_EVENTS, REJECTED_EVENTS
from modelops_registrar.app import Settings
from modelops_runtime.processes import NatsServer
from tests.integration.bundler.services import running_services

pytestmark = pytest.mark.integration

ANSWERS = (ModelRegistered, CommandRejected)


def model(mid: str, module: str = "model") -> ModelEntry:
    code = f"class SIR: pass  # {mid}\n".encode()
    return ModelEntry(
        id=mid,
        entrypoint=f"{module}:SIR",
        path=f"{module}.py",
        code=[
            TrackedFile(
                path=f"{module}.py",
                digest="sha256:" + hashlib.sha256(code).hexdigest(),
                size=len(code),
            )
        ],
    )


def register(mid: str, project: str = "sir", module: str = "model") -> RegisterModel:
    return RegisterModel(correlation_id=f"corr-{mid}", project=project, model=model(mid, module))


async def stored_registry(url: str, project: str) -> tuple[Registry, int]:
    nc = await nats.connect(url)
    try:
        entry = await (await nc.jetstream().key_value(KV_MODELS)).get(project)
        return decode(entry.value, Registry), entry.revision
    finally:
        await nc.close()


async def send_raw(url: str, data: bytes, correlation_id: str) -> CommandRejected:
    """Publish raw bytes as a RegisterModel and wait for the CommandRejected answering them."""
    nc = await nats.connect(url)
    answered: asyncio.Future[CommandRejected] = asyncio.get_running_loop().create_future()

    async def on_event(msg) -> None:
        event = decode_event(msg.data)
        if event.correlation_id == correlation_id and not answered.done():
            answered.set_result(event)

    try:
        await nc.subscribe(f"{REJECTED_EVENTS}.>", cb=on_event)
        await nc.flush()
        await nc.jetstream().publish(
            "modelops.cmd.register_model", data, headers={"Nats-Msg-Id": correlation_id}
        )
        return await asyncio.wait_for(answered, 10)
    finally:
        await nc.close()


def settings(server: NatsServer) -> Settings:
    return Settings(nats_url=server.url)


async def test_registration_is_kept_in_kv_with_revisions(fresh_nats: NatsServer) -> None:
    async with running_services(registrar=settings(fresh_nats)):
        first = await request(
            fresh_nats.url, register("a", module="ma"), answers=ANSWERS, timeout=10
        )
        second = await request(
            fresh_nats.url, register("b", module="mb"), answers=ANSWERS, timeout=10
        )

    assert isinstance(first, ModelRegistered) and isinstance(second, ModelRegistered)
    assert (first.correlation_id, first.model.id, first.model_digest) == (
        "corr-a",
        "a",
        model("a", "ma").digest,
    )
    assert second.revision > first.revision
    registry, revision = await stored_registry(fresh_nats.url, "sir")
    assert sorted(registry.models) == ["a", "b"]
    assert revision == second.revision


async def test_concurrent_registrations_for_one_project_both_land(fresh_nats: NatsServer) -> None:
    commands = [register(f"m{i}", module=f"mod{i}") for i in range(6)]

    async with running_services(registrar=settings(fresh_nats)):
        answers = await asyncio.gather(
            *(request(fresh_nats.url, cmd, answers=ANSWERS, timeout=15) for cmd in commands)
        )

    assert all(isinstance(a, ModelRegistered) for a in answers)
    assert len({a.revision for a in answers}) == len(commands)  # one write each, none lost
    registry, _ = await stored_registry(fresh_nats.url, "sir")
    assert sorted(registry.models) == sorted(c.model.id for c in commands)


def _raw(mid: str, **model_changes: object) -> bytes:
    data = json.loads(encode(register(mid)))
    data["model"].update(model_changes)
    return json.dumps(data).encode()


async def test_invalid_commands_are_rejected_and_the_service_keeps_running(
    fresh_nats: NatsServer,
) -> None:
    bad_path = json.loads(_raw("x"))
    bad_path["model"]["code"][0]["path"] = "../model.py"
    cases = [
        (b'{"type": "modelops.cmd.register_model", "correlation_id": "c-json",', "c-json", None),
        (_raw("e", entrypoint="model"), "corr-e", "model.entrypoint"),
        (json.dumps(bad_path).encode(), "corr-x", "model.code.0.path"),
        (_raw("p", path="/abs/model.py"), "corr-p", "model.path"),
    ]
    async with running_services(registrar=settings(fresh_nats)):
        rejections = [await send_raw(fresh_nats.url, data, corr) for data, corr, _ in cases]
        after = await request(fresh_nats.url, register("ok"), answers=ANSWERS, timeout=10)

    assert [r.field for r in rejections] == [field for *_, field in cases]
    assert "not valid JSON" in rejections[0].reason
    assert "'..'" in rejections[2].reason
    assert "absolute" in rejections[3].reason
    assert isinstance(after, ModelRegistered)


async def test_a_command_sent_while_the_registrar_is_down_is_handled_when_it_returns(
    fresh_nats: NatsServer,
) -> None:
    async with running_services(registrar=settings(fresh_nats)):
        await request(fresh_nats.url, register("a", module="ma"), answers=ANSWERS, timeout=10)
    cmd = register("b", module="mb")
    nc = await nats.connect(fresh_nats.url)
    try:
        events = await nc.subscribe(f"{MODEL_EVENTS}.>")
        await nc.flush()
        stored = await nc.jetstream().publish(  # the registrar is down: the stream keeps it
            cmd.subject, encode(cmd), headers={"Nats-Msg-Id": cmd.id}
        )
        async with running_services(registrar=settings(fresh_nats)):
            answer = decode_event((await events.next_msg(timeout=10)).data)
    finally:
        await nc.close()

    assert stored.seq > 0
    assert isinstance(answer, ModelRegistered)
    assert answer.correlation_id == cmd.correlation_id
    registry, _ = await stored_registry(fresh_nats.url, "sir")
    assert sorted(registry.models) == ["a", "b"]
