"""How one delivery is settled: answers, acks, naks and terminations. No servers."""

from __future__ import annotations

import hashlib
import json

import pytest

from modelops_contracts import (
    BuildBundle,
    CommandRejected,
    ModelEntry,
    ModelRegistered,
    RegisterModel,
    TrackedFile,
    encode,
)
from modelops_registrar.errors import Rejected, Transient
from modelops_registrar.handlers import SOURCE, on_register_model
from modelops_runtime.consumer import Redelivery, consume

from .fakes import FakeDelivery, MemoryModelsStore, Published

POLICY = Redelivery(max_deliver=3, nak_delay_s=0.5)


def model() -> ModelEntry:
    code = b"class SIR: pass\n"
    return ModelEntry(
        id="SIR",
        entrypoint="model:SIR",
        path="model.py",
        code=[
            TrackedFile(
                path="model.py", digest="sha256:" + hashlib.sha256(code).hexdigest(), size=len(code)
            )
        ],
    )


def raw_command(**changes: object) -> bytes:
    data = json.loads(encode(RegisterModel(correlation_id="corr-9", project="sir", model=model())))
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        target = data
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        target[last] = value
    return json.dumps(data).encode()


async def run(
    delivery: FakeDelivery, handle=None, publish: Published | None = None
) -> tuple[str, Published]:
    publish = publish or Published()
    store = MemoryModelsStore()

    async def default(cmd):
        return await on_register_model(cmd, store=store)

    outcome = await consume(
        delivery,
        accepts=(RegisterModel,),
        handle=handle or default,
        publish=publish,
        policy=POLICY,
        source=SOURCE,
    )
    return outcome, publish


async def test_valid_command_is_answered_then_acked() -> None:
    delivery = FakeDelivery(raw_command())

    outcome, published = await run(delivery)

    assert outcome == "acked"
    assert delivery.settled == [("ack", None)]
    [event] = published.events
    assert isinstance(event, ModelRegistered)
    assert event.correlation_id == "corr-9"


async def test_bad_json_is_rejected_and_acked_never_redelivered() -> None:
    delivery = FakeDelivery(b"{not json", headers={"Nats-Msg-Id": "m-1"})

    outcome, published = await run(delivery)

    assert outcome == "acked"
    [event] = published.events
    assert isinstance(event, CommandRejected)
    assert event.command_id == event.correlation_id == "m-1"
    assert "not valid JSON" in event.reason


async def test_rejections_of_anonymous_garbage_get_distinct_ids() -> None:
    """With no id anywhere, each answer needs its own, or JetStream would drop the second."""
    _, first = await run(FakeDelivery(b"garbage"))
    _, second = await run(FakeDelivery(b"garbage"))

    assert first.events[0].id != second.events[0].id


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"model__entrypoint": "model.SIR"}, "model.entrypoint"),
        ({"model__code__0__path": "../model.py"}, "model.code.0.path"),
        ({"model__path": "/etc/model.py"}, "model.path"),
        ({"model__code__0__digest": "sha256:XYZ"}, "model.code.0.digest"),
        ({"model__code__0__size": -1}, "model.code.0.size"),
    ],
)
async def test_invalid_command_is_rejected_naming_the_field(change: dict, field: str) -> None:
    delivery = FakeDelivery(raw_command(**change))

    outcome, published = await run(delivery)

    assert outcome == "acked"
    [event] = published.events
    assert isinstance(event, CommandRejected)
    assert event.field == field
    assert event.correlation_id == "corr-9"  # recovered from the undecodable command
    assert event.command_type == "modelops.cmd.register_model"


async def test_other_command_on_this_subject_is_rejected() -> None:
    data = encode(BuildBundle(correlation_id="c", project="p", repository="r"))

    outcome, published = await run(FakeDelivery(data))

    assert outcome == "acked"
    [event] = published.events
    assert isinstance(event, CommandRejected)
    assert event.field == "type"
    assert "modelops.cmd.build_bundle" in (event.hint or "")


async def test_refusal_from_the_handler_is_answered() -> None:
    async def refuse(cmd):
        raise Rejected("no such thing", field="project", hint="fix it")

    outcome, published = await run(FakeDelivery(raw_command()), handle=refuse)

    assert outcome == "acked"
    [event] = published.events
    assert (event.reason, event.field, event.hint) == ("no such thing", "project", "fix it")
    assert event.id == f"{event.command_id}.rejected"


async def test_transient_failure_is_nacked_with_delay() -> None:
    async def down(cmd):
        raise Transient("KV down")

    delivery = FakeDelivery(raw_command(), attempt=1)
    outcome, published = await run(delivery, handle=down)

    assert outcome == "nacked"
    assert delivery.settled == [("nack", 0.5)]
    assert published.events == []


async def test_transient_failure_on_the_last_delivery_is_answered_and_acked() -> None:
    async def down(cmd):
        raise Transient("KV down")

    delivery = FakeDelivery(raw_command(), attempt=POLICY.max_deliver)
    outcome, published = await run(delivery, handle=down)

    assert outcome == "acked"
    [event] = published.events
    assert isinstance(event, CommandRejected)
    assert "gave up after 3 attempts: KV down" in event.reason


async def test_a_bug_terminates_the_message_and_still_answers() -> None:
    async def crash(cmd):
        raise ZeroDivisionError("oops")

    delivery = FakeDelivery(raw_command())
    outcome, published = await run(delivery, handle=crash)

    assert outcome == "terminated"
    assert delivery.settled == [("term", None)]
    [event] = published.events
    assert "internal error: ZeroDivisionError" in event.reason


async def test_answer_that_cannot_be_published_is_retried() -> None:
    published = Published()
    published.fail = TimeoutError()
    delivery = FakeDelivery(raw_command())

    outcome, _ = await run(delivery, publish=published)

    assert outcome == "nacked"
    assert delivery.settled == [("nack", 0.5)]
