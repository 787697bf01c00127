"""How the bundler settles deliveries of commands and of events. No servers."""

from __future__ import annotations

import hashlib

from modelops_bundler.errors import Transient
from modelops_bundler.handlers import SOURCE
from modelops_contracts import (
    BuildBundle,
    BundlePushed,
    CommandRejected,
    ModelEntry,
    ModelRegistered,
    TrackedFile,
    encode,
)
from modelops_runtime.consumer import Redelivery, consume, consume_event

from .fakes import FakeDelivery, Published

POLICY = Redelivery(max_deliver=2, nak_delay_s=1.5)
DIGEST = "sha256:" + "ab" * 32


def registered() -> ModelRegistered:
    code = b"class SIR: pass\n"
    model = ModelEntry(
        id="SIR",
        entrypoint="model:SIR",
        path="model.py",
        code=[
            TrackedFile(
                path="model.py", digest="sha256:" + hashlib.sha256(code).hexdigest(), size=len(code)
            )
        ],
    )
    return ModelRegistered(
        correlation_id="c", project="p", model=model, model_digest=model.digest, revision=1
    )


def pushed(cmd_or_event) -> list:
    return [
        BundlePushed(
            correlation_id=cmd_or_event.correlation_id,
            project="p",
            bundle_ref=f"local/p@{DIGEST}",
            digest=DIGEST,
            repository="p",
        )
    ]


async def test_build_command_is_answered_and_acked() -> None:
    delivery = FakeDelivery(encode(BuildBundle(correlation_id="c", project="p", repository="p")))
    published = Published()

    async def handle(cmd):
        return pushed(cmd)

    outcome = await consume(
        delivery,
        accepts=(BuildBundle,),
        handle=handle,
        publish=published,
        policy=POLICY,
        source=SOURCE,
    )

    assert outcome == "acked"
    assert [type(e) for e in published.events] == [BundlePushed]


async def test_invalid_build_command_is_rejected_and_acked() -> None:
    delivery = FakeDelivery(
        b'{"type": "modelops.cmd.build_bundle", "correlation_id": "c9", "project": "p"}'
    )
    published = Published()

    async def never(cmd):
        raise AssertionError("must not be called")

    outcome = await consume(
        delivery,
        accepts=(BuildBundle,),
        handle=never,
        publish=published,
        policy=POLICY,
        source=SOURCE,
    )

    assert outcome == "acked"
    [event] = published.events
    assert isinstance(event, CommandRejected)
    assert (event.field, event.correlation_id, event.source) == ("repository", "c9", SOURCE)


async def test_event_is_handled_and_acked() -> None:
    delivery = FakeDelivery(encode(registered()), subject="modelops.evt.model.model_registered")
    published = Published()

    async def handle(event):
        return pushed(event)

    outcome = await consume_event(
        delivery, accepts=(ModelRegistered,), handle=handle, publish=published, policy=POLICY
    )

    assert outcome == "acked"
    assert published.events[0].correlation_id == "c"


async def test_malformed_event_is_terminated_not_answered() -> None:
    delivery = FakeDelivery(b"[1, 2", subject="modelops.evt.model.model_registered")
    published = Published()

    async def never(event):
        raise AssertionError("must not be called")

    outcome = await consume_event(
        delivery, accepts=(ModelRegistered,), handle=never, publish=published, policy=POLICY
    )

    assert outcome == "terminated"
    assert delivery.settled == [("term", None)]
    assert published.events == []


async def test_event_failing_transiently_is_retried_then_dropped() -> None:
    async def down(event):
        raise Transient("store down")

    first = FakeDelivery(encode(registered()), attempt=1)
    last = FakeDelivery(encode(registered()), attempt=POLICY.max_deliver)
    for delivery in (first, last):
        await consume_event(
            delivery, accepts=(ModelRegistered,), handle=down, publish=Published(), policy=POLICY
        )

    assert first.settled == [("nack", 1.5)]
    assert last.settled == [("term", None)]
