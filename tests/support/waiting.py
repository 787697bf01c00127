"""Waiting in tests: on a condition, with a deadline, failing with what was awaited.

A test never sleeps for a guessed time. It waits on an event when there is one; when there is
none (a file appears, a process dies, a server turns ready), it polls the condition with a
deadline here, so a slow machine only takes longer and a broken one fails naming the condition.
"""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["wait_for", "wait_while_running"]

T = TypeVar("T")
# What is awaited, for the failure message; a callable is asked at failure time, so it can say
# what was last seen.
What = str | Callable[[], str]


def _timed_out(what: What, timeout_s: float) -> AssertionError:
    described = what() if callable(what) else what
    return AssertionError(f"timed out after {timeout_s:g} s waiting for {described}")


async def wait_for(
    predicate: Callable[[], T | Awaitable[T]],
    what: What,
    *,
    timeout_s: float = 30.0,
    poll_s: float = 0.05,
) -> T:
    """Poll `predicate` (sync or async) until it returns something truthy, and return that.

    Raises AssertionError naming `what` after `timeout_s`; `poll_s` is the pause between polls.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout_s)
        await asyncio.sleep(poll_s)  # the poll interval of a deadline wait


def wait_while_running(
    predicate: Callable[[], T],
    process: subprocess.Popen[bytes],
    what: What,
    *,
    timeout_s: float = 20.0,
    poll_s: float = 0.02,
) -> T:
    """Poll `predicate` until truthy while `process` must keep running; return the result.

    For synchronous tests driving a child process: the pause between polls is a wait on the
    process, so its exit is noticed at once and fails the wait (with its stderr tail when that
    is a pipe) instead of running into the deadline.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout_s)
        try:
            process.wait(timeout=poll_s)
        except subprocess.TimeoutExpired:
            continue
        stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
        described = what() if callable(what) else what
        raise AssertionError(
            f"process exited with {process.returncode} before {described}"
            + (f"; stderr:\n{stderr[-3000:]}" if stderr else "")
        )
