"""The shared service plumbing on its own: the runtime's Rejected/Transient settle a delivery
as a service's subclasses do, env parsing names the variable, and none of it needs faststream.
No servers."""

from __future__ import annotations

import subprocess
import sys

import pytest

from modelops_contracts import CommandRejected, Event, RegisterModel, encode
from modelops_runtime.consumer import Redelivery, Rejected, Transient, consume
from modelops_runtime.service import (
    NatsSettings,
    env_bool,
    env_float,
    env_int,
    env_optional_bool,
    inbox_prefix,
    nats_from_env,
)
from tests.support.deliveries import FakeDelivery as Delivery
from tests.unit.registrar.test_registrar_consumer import model

POLICY = Redelivery(max_deliver=2, nak_delay_s=0.25)


def command() -> bytes:
    return encode(RegisterModel(correlation_id="corr-1", project="sir", model=model()))


async def run(delivery: Delivery, error: Exception) -> tuple[str, list[Event]]:
    published: list[Event] = []

    async def publish(events) -> None:
        published.extend(events)

    async def handle(cmd):
        raise error

    outcome = await consume(
        delivery,
        accepts=(RegisterModel,),
        handle=handle,
        publish=publish,
        policy=POLICY,
        source="test",
    )
    return outcome, published


async def test_runtime_rejected_is_answered_with_its_field_and_hint() -> None:
    delivery = Delivery(command())

    outcome, published = await run(delivery, Rejected("no such model", field="model", hint="h"))

    assert outcome == "acked"
    assert delivery.settled == [("ack", None)]
    [answer] = published
    assert isinstance(answer, CommandRejected)
    assert (answer.reason, answer.field, answer.hint) == ("no such model", "model", "h")


async def test_runtime_transient_naks_then_gives_up_on_the_last_delivery() -> None:
    first = Delivery(command(), attempt=1)
    last = Delivery(command(), attempt=POLICY.max_deliver)

    assert (await run(first, Transient("KV down")))[0] == "nacked"
    outcome, published = await run(last, Transient("KV down"))

    assert first.settled == [("nack", POLICY.nak_delay_s)]
    assert outcome == "acked"
    [answer] = published
    assert isinstance(answer, CommandRejected)
    assert answer.reason == "gave up after 2 attempts: KV down"


class _ServiceError(Exception):
    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class _ServiceRejected(_ServiceError, Rejected):
    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.field = field


def test_a_service_subclass_keeps_its_own_message_field_and_hint() -> None:
    exc = _ServiceRejected("bad", field="f", hint="fix it")

    assert isinstance(exc, Rejected)
    assert (exc.message, exc.field, exc.hint) == ("bad", "f", "fix it")


class _SettingsError(Exception):
    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def test_env_parsers_read_defaults_and_name_the_bad_variable() -> None:
    env = {"N": "3", "F": "0.5", "B": "yes", "BAD": "x", "NEG": "-1"}
    err = _SettingsError

    assert env_int(env, "N", 9, error=err) == 3
    assert env_int(env, "MISSING", 9, error=err) == 9
    assert env_float(env, "F", 1.0, error=err) == 0.5
    assert env_bool(env, "B", False, error=err) is True
    assert env_optional_bool(env, "MISSING", error=err) is None
    with pytest.raises(_SettingsError, match="BAD='x' is not a whole number"):
        env_int(env, "BAD", 1, error=err)
    with pytest.raises(_SettingsError, match="NEG='-1' must be positive"):
        env_float(env, "NEG", 1.0, error=err)
    with pytest.raises(_SettingsError, match="BAD='x' is not a boolean") as raised:
        env_bool(env, "BAD", False, error=err)
    assert raised.value.hint == "use true or false"


def test_nats_settings_from_env_and_the_users_inbox() -> None:
    fields = nats_from_env({"MODELOPS_NATS_USER": "bundler", "MODELOPS_NATS_PASSWORD": "pw"})
    settings = NatsSettings(**fields)

    assert settings.nats_url == "nats://127.0.0.1:4222"
    assert inbox_prefix(settings) == "_INBOX.bundler"
    assert "pw" not in repr(settings)
    assert inbox_prefix(NatsSettings()) == "_INBOX"


def test_consumer_and_service_load_without_faststream() -> None:
    code = (
        "import sys, modelops_runtime.consumer, modelops_runtime.service, "
        "modelops_runtime.publishing; print('faststream' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"
