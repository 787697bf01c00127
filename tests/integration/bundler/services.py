"""Run the registrar and bundler against a fresh nats-server, in-process, for tests.

`running_services` serves them in the test's own event loop (async tests); `ServicesThread`
serves them in a background thread with its own loop, for tests that block the main thread
on a CLI subprocess. Either way they are stopped and drained when the block ends.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from modelops_bundler import app as bundler_app
from modelops_registrar import app as registrar_app
from modelops_runtime.processes import NatsServer

__all__ = ["ServicesThread", "fresh_nats", "running_services"]

START_TIMEOUT_S = 20.0


@pytest.fixture
def fresh_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server of this test alone (~60 ms to start): durable consumers, streams and KV
    start empty, so no test sees another's commands."""
    with NatsServer(tmp_path / "nats") as server:
        yield server


@asynccontextmanager
async def running_services(
    *,
    registrar: registrar_app.Settings | None = None,
    bundler: bundler_app.Settings | None = None,
) -> AsyncIterator[None]:
    """Serve the given services until the block ends; raises if one fails to start."""
    stop = asyncio.Event()
    started: list[tuple[asyncio.Task[None], asyncio.Event]] = []
    for serve, settings in ((registrar_app.serve, registrar), (bundler_app.serve, bundler)):
        if settings is not None:
            ready = asyncio.Event()
            started.append((asyncio.create_task(serve(settings, stop=stop, ready=ready)), ready))
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            for task, ready in started:
                waiter = asyncio.create_task(ready.wait())
                await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if task.done():
                    task.result()  # raise the start-up failure
                    raise RuntimeError("service stopped before it was ready")
        yield
    finally:
        stop.set()
        await asyncio.gather(*(task for task, _ in started), return_exceptions=True)


class ServicesThread:
    """`running_services` in a background thread, as a (sync) context manager."""

    def __init__(self, **services: Any) -> None:
        self._services = services
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="test-services", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._stop = asyncio.Event()
            try:
                async with running_services(**self._services):
                    self._ready.set()
                    await self._stop.wait()
            except BaseException as exc:
                self._error = exc
                raise
            finally:
                self._ready.set()

        try:
            self._loop.run_until_complete(main())
        except BaseException:  # kept in self._error and re-raised in the test's thread
            pass
        finally:
            self._loop.close()

    def __enter__(self) -> ServicesThread:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S + 5) or self._error is not None:
            self.__exit__(None, None, None)
            raise RuntimeError("services did not start") from self._error
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)
        if self._thread.is_alive():
            raise RuntimeError("services did not stop within 30 s")
