"""A small HTTP server for probes and scraping: `/livez`, `/readyz`, `/metrics`.

Kubernetes restarts a container whose liveness fails and stops routing to one whose readiness
fails, so the two answer different questions:

- `/livez`: the process's event loop still runs (this handler answering proves it) and every
  `live_checks` passes. Keep live checks to "is this process wedged for good": a NATS outage
  must not restart every service at once, so NATS belongs in readiness only.
- `/readyz`: every `ready_checks` passes, e.g. connected to NATS and the streams and KV buckets
  exist. Checks run concurrently, each with a timeout; the JSON body names the failing ones.
  After `draining()` it answers 503 so a terminating pod leaves the rotation first.
- `/metrics`: the process's `Metrics` registry in Prometheus text format.

A check is an async callable returning True (or None) when healthy and False, or raising, when
not; the exception text becomes the reason shown in the body.

    async with HealthServer(port=8080, ready_checks={"nats": nats_ready_check(nc)}) as hs:
        ...  # hs.port, hs.url

Services read their settings with `HealthSettings.from_env()` (MODELOPS_HEALTH_PORT,
MODELOPS_HEALTH_HOST) or use `health_server_from_env(...)`, which does nothing when no port is
set (the embedded stack runs several services in one process without probes).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import nats
import nats.errors
import nats.js.errors
import structlog
from aiohttp import web
from nats.js import JetStreamContext

from modelops_runtime.metrics import CONTENT_TYPE, Metrics

__all__ = [
    "DEFAULT_HOST",
    "Check",
    "CheckResult",
    "HealthServer",
    "HealthServerError",
    "HealthSettings",
    "NotReady",
    "health_server_from_env",
    "jetstream_ready_check",
    "nats_ready_check",
    "run_checks",
]

log = structlog.get_logger(__name__)

Check = Callable[[], Awaitable[bool | None]]
DEFAULT_HOST = "127.0.0.1"  # containers set MODELOPS_HEALTH_HOST=0.0.0.0 (the Dockerfile does)
ENV_PORT = "MODELOPS_HEALTH_PORT"
ENV_HOST = "MODELOPS_HEALTH_HOST"


class HealthServerError(RuntimeError):
    """The health server could not start (port taken, bad address) or was misconfigured."""


class NotReady(Exception):  # a signal from a check, not a failure of ours
    """Raised by a check to say why it is not ready; the message is shown in `/readyz`."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: str = "ok"


@dataclass(frozen=True, slots=True)
class HealthSettings:
    """Where the health server listens; `port=None` means none is started."""

    port: int | None = None
    host: str = DEFAULT_HOST

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HealthSettings:
        env = os.environ if env is None else env
        raw = env.get(ENV_PORT, "").strip()
        port: int | None = None
        if raw:
            try:
                port = int(raw)
            except ValueError as exc:
                raise HealthServerError(
                    f"{ENV_PORT}={raw!r} is not a port number (hint: e.g. {ENV_PORT}=8080, "
                    f"or leave it unset for no health server)"
                ) from exc
            if not 0 <= port <= 65535:
                raise HealthServerError(f"{ENV_PORT}={port} is out of range 0-65535")
        return cls(port=port, host=env.get(ENV_HOST, "").strip() or DEFAULT_HOST)


async def _run_one(name: str, check: Check, timeout_s: float) -> CheckResult:
    try:
        async with asyncio.timeout(timeout_s):
            result = await check()
    except TimeoutError:
        return CheckResult(name, False, f"no answer within {timeout_s:g}s")
    except NotReady as exc:
        return CheckResult(name, False, str(exc) or "not ready")
    # Broad on purpose: the boundary between the probe and checks services supply. Whatever a
    # check raises means "not ready": reported in the body and logged with its traceback (an
    # unexpected error is a bug in the check), never raised into the HTTP server.
    except Exception as exc:
        log.warning("health.check_error", check=name, error=repr(exc), exc_info=True)
        return CheckResult(name, False, f"{type(exc).__name__}: {exc}")
    if result is False:
        return CheckResult(name, False, "not ready")
    return CheckResult(name, True)


async def run_checks(checks: Mapping[str, Check], *, timeout_s: float) -> list[CheckResult]:
    """Run every check concurrently, each bounded by `timeout_s`."""
    return list(
        await asyncio.gather(*(_run_one(name, fn, timeout_s) for name, fn in checks.items()))
    )


def nats_ready_check(nc: nats.NATS) -> Check:
    """Ready while the client is connected (False while it reconnects or after close)."""

    async def check() -> bool:
        if nc.is_connected:
            return True
        state = "closed" if nc.is_closed else "reconnecting" if nc.is_reconnecting else "down"
        raise NotReady(f"NATS connection {state}")

    return check


def jetstream_ready_check(
    js: JetStreamContext, *, streams: Iterable[str] = (), kv: Iterable[str] = ()
) -> Check:
    """Ready when every named stream and KV bucket exists (one stream-info request each).

    It needs the `$JS.API.STREAM.INFO.<name>` permission for each, which every service user in
    deploy/nats/nats-server.conf has for the streams it uses.
    """
    names = [*streams, *(f"KV_{bucket}" for bucket in kv)]

    async def check() -> bool:
        missing: list[str] = []
        for name in names:
            try:
                await js.stream_info(name)
            except nats.js.errors.NotFoundError:
                missing.append(name)
            except (nats.errors.NoRespondersError, nats.js.errors.ServiceUnavailableError) as exc:
                raise NotReady("JetStream is not enabled or not available") from exc
            except nats.errors.TimeoutError as exc:
                raise NotReady(f"JetStream did not answer stream info for {name}") from exc
        if missing:
            raise NotReady(f"missing: {', '.join(missing)} (hint: ensure_jetstream creates them)")
        return True

    return check


class HealthServer:
    """`/livez`, `/readyz` and `/metrics` on one port; an async context manager.

    `port=0` picks a free port (read `.port` after start). Check names must be unique; add more
    with `add_ready_check` before or after start.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        host: str = DEFAULT_HOST,
        ready_checks: Mapping[str, Check] | None = None,
        live_checks: Mapping[str, Check] | None = None,
        metrics: Metrics | None = None,
        check_timeout_s: float = 2.0,
        service: str = "",
    ) -> None:
        self.host = host
        self._requested_port = port
        self._ready_checks: dict[str, Check] = dict(ready_checks or {})
        self._live_checks: dict[str, Check] = dict(live_checks or {})
        self.metrics = metrics if metrics is not None else Metrics()
        self._timeout_s = check_timeout_s
        self.service = service
        self._draining = False
        self._started = time.monotonic()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise HealthServerError("the health server is not started; use 'async with'")
        return self._port

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def add_ready_check(self, name: str, check: Check) -> None:
        if name in self._ready_checks:
            raise ValueError(f"ready check {name!r} is already registered")
        self._ready_checks[name] = check

    def draining(self) -> None:
        """From now on `/readyz` answers 503: call it when shutdown starts."""
        self._draining = True

    # -------------------------------------------------------------------------------- handlers

    async def _livez(self, request: web.Request) -> web.Response:
        results = await run_checks(self._live_checks, timeout_s=self._timeout_s)
        return self._answer(results, extra={"uptime_s": round(time.monotonic() - self._started)})

    async def _readyz(self, request: web.Request) -> web.Response:
        results = await run_checks(self._ready_checks, timeout_s=self._timeout_s)
        if self._draining:
            results.append(CheckResult("draining", False, "shutting down"))
        response = self._answer(results)
        if response.status != 200:
            failing = {r.name: r.detail for r in results if not r.ok}
            log.info("health.not_ready", service=self.service, failing=failing)
        return response

    async def _metrics(self, request: web.Request) -> web.Response:
        body = self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    def _answer(
        self, results: list[CheckResult], extra: Mapping[str, Any] | None = None
    ) -> web.Response:
        ok = all(r.ok for r in results)
        body = {
            "status": "ok" if ok else "failing",
            "service": self.service,
            "checks": {r.name: r.detail for r in results},
            **(extra or {}),
        }
        return web.json_response(body, status=200 if ok else 503)

    # ------------------------------------------------------------------------------- lifecycle

    async def start(self) -> Self:
        app = web.Application()
        app.router.add_get("/livez", self._livez)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._requested_port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise HealthServerError(
                f"health server cannot listen on {self.host}:{self._requested_port}: {exc} "
                f"(hint: is the port taken? set {ENV_PORT} to another one)"
            ) from exc
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        self._started = time.monotonic()
        log.info("health.started", service=self.service, host=self.host, port=self._port)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            log.debug("health.stopped", service=self.service)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


@contextlib.asynccontextmanager
async def health_server_from_env(
    *,
    service: str,
    ready_checks: Mapping[str, Check] | None = None,
    live_checks: Mapping[str, Check] | None = None,
    metrics: Metrics | None = None,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[HealthServer | None]:
    """A HealthServer configured from MODELOPS_HEALTH_PORT/HOST, or None when no port is set."""
    settings = HealthSettings.from_env(env)
    if settings.port is None:
        yield None
        return
    async with HealthServer(
        port=settings.port,
        host=settings.host,
        ready_checks=ready_checks,
        live_checks=live_checks,
        metrics=metrics,
        service=service,
    ) as server:
        yield server
