"""The task queue's inbox bookkeeping: deliveries are kept whichever pull request they answer,
and a status ends only the request it was sent for."""

from __future__ import annotations

import asyncio

from nats.aio.msg import Msg

from modelops_runner.queue import _Deliveries


def _msg(subject: str, data: bytes = b"", status: str = "") -> Msg:
    headers = {"Status": status, "Description": "Request Timeout"} if status else None
    return Msg(_client=None, subject=subject, data=data, headers=headers)  # type: ignore[arg-type]


async def test_a_late_status_of_an_earlier_request_does_not_end_the_current_one() -> None:
    inbox = _Deliveries("_INBOX.t")
    first = inbox.next_request()
    await inbox.on_message(_msg(first, b"task-0"))
    second = inbox.next_request()  # the first fetch gave up; its 408 is still on the way
    await inbox.on_message(_msg(first, status="408"))
    assert inbox.status is None
    await inbox.on_message(_msg(first, b"task-1"))  # a delivery is kept, whoever asked
    await inbox.on_message(_msg(second, status="404"))
    assert inbox.status == ("404", "Request Timeout")
    assert [m.data for m in inbox.take(5)] == [b"task-0", b"task-1"]
    assert inbox.take(5) == []


async def test_a_wait_ends_at_enough_messages_at_its_status_or_at_its_deadline() -> None:
    inbox = _Deliveries("_INBOX.t")
    loop = asyncio.get_running_loop()
    current = inbox.next_request()
    waiting = asyncio.ensure_future(inbox.wait(2, loop.time() + 5))
    await inbox.on_message(_msg(current, b"a"))
    await asyncio.sleep(0)
    assert not waiting.done()
    await inbox.on_message(_msg(current, b"b"))
    await asyncio.wait_for(waiting, 1)
    inbox.take(2)

    current = inbox.next_request()
    waiting = asyncio.ensure_future(inbox.wait(2, loop.time() + 5))
    await inbox.on_message(_msg(current, status="100"))  # a heartbeat ends nothing
    await asyncio.sleep(0)
    assert not waiting.done()
    await inbox.on_message(_msg(current, status="408"))
    await asyncio.wait_for(waiting, 1)

    inbox.next_request()
    t0 = loop.time()
    await inbox.wait(1, loop.time() + 0.05)  # nothing comes: the deadline ends it
    assert loop.time() - t0 >= 0.04
