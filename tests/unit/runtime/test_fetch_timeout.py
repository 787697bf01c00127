"""nats-py's fetch sometimes raises a plain TimeoutError; faststream's pull loop only tolerates
nats-py's own TimeoutError, so the glue makes fetch raise that one."""

from __future__ import annotations

import nats.errors
import pytest
from faststream.nats.subscriber.usecases import stream_pull_subscriber
from nats.js.client import JetStreamContext

from modelops_runtime.faststream_glue import with_nats_fetch_timeout


async def test_a_plain_timeout_becomes_nats_timeout_and_others_pass_through() -> None:
    async def plain() -> list[object]:
        raise TimeoutError

    async def nats_own() -> list[object]:
        raise nats.errors.TimeoutError

    async def messages() -> list[object]:
        return ["m"]

    with pytest.raises(nats.errors.TimeoutError) as info:
        await with_nats_fetch_timeout(plain)()
    assert isinstance(info.value.__cause__, TimeoutError)
    with pytest.raises(nats.errors.TimeoutError):
        await with_nats_fetch_timeout(nats_own)()
    assert await with_nats_fetch_timeout(messages)() == ["m"]


def test_the_pull_subscription_is_wrapped_once_and_faststream_expects_that_error() -> None:
    fetch = JetStreamContext.PullSubscription.fetch
    assert getattr(fetch, "__modelops_wrapped__", False)
    assert with_nats_fetch_timeout(fetch) is fetch
    # the assumption the wrapper serves: faststream's pull loop suppresses nats-py's class
    assert stream_pull_subscriber.TimeoutError is nats.errors.TimeoutError
