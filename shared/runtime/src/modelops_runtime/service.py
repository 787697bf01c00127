"""What every NATS-consuming service reads from its environment, how it connects, and
its `python -m` entry point.

The NATS part of a service's settings (`NatsSettings`, which a service's own frozen Settings
extends), parsers for its numeric and boolean `MODELOPS_*` variables, and the connection as
the service's deploy user. Free of faststream: see faststream_glue for the broker.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import nats
import structlog

from modelops_runtime.logging import configure_logging
from modelops_runtime.nats_setup import connect

__all__ = [
    "DEFAULT_NATS_URL",
    "NatsSettings",
    "connect_service",
    "env_bool",
    "env_float",
    "env_int",
    "env_optional_bool",
    "inbox_prefix",
    "nats_from_env",
    "run_main",
]

log = structlog.get_logger(__name__)

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

# Builds the service's own settings error from a message (and a `hint=` keyword).
ErrorFactory = Callable[..., Exception]


@dataclass(frozen=True)
class NatsSettings:
    """How a service reaches NATS; a service's Settings extends it with its own fields."""

    nats_url: str = DEFAULT_NATS_URL
    nats_creds: str | None = None  # a NATS .creds file
    # One NATS user per component in a deployment (deploy/nats/nats-server.conf).
    nats_user: str | None = None
    nats_password: str | None = field(default=None, repr=False)


def nats_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """The NatsSettings fields from MODELOPS_NATS_*, as keywords for a Settings constructor."""
    return {
        "nats_url": env.get("MODELOPS_NATS_URL") or DEFAULT_NATS_URL,
        "nats_creds": env.get("MODELOPS_NATS_CREDS") or None,
        "nats_user": env.get("MODELOPS_NATS_USER") or None,
        "nats_password": env.get("MODELOPS_NATS_PASSWORD") or None,
    }


def inbox_prefix(settings: NatsSettings) -> str:
    """A deploy user may only receive on `_INBOX.<user>.>` (deploy/nats/nats-server.conf)."""
    return f"_INBOX.{settings.nats_user}" if settings.nats_user else "_INBOX"


async def connect_service(settings: NatsSettings, *, name: str) -> nats.NATS:
    """Connect as the service's user, waiting for NATS up to its first-connect deadline."""
    return await connect(
        settings.nats_url,
        name=name,
        credentials=settings.nats_creds,
        user=settings.nats_user,
        password=settings.nats_password,
        inbox_prefix=inbox_prefix(settings),
    )


def env_float(env: Mapping[str, str], name: str, default: float, *, error: ErrorFactory) -> float:
    """A positive number from `name`, or `default` when unset or empty."""
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise error(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise error(f"{name}={raw!r} must be positive")
    return value


def env_int(env: Mapping[str, str], name: str, default: int, *, error: ErrorFactory) -> int:
    """A whole number of at least 1 from `name`, or `default` when unset or empty."""
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise error(f"{name}={raw!r} is not a whole number") from None
    if value < 1:
        raise error(f"{name}={raw!r} must be at least 1")
    return value


def env_bool(env: Mapping[str, str], name: str, default: bool, *, error: ErrorFactory) -> bool:
    """A boolean from `name` (true/false, yes/no, on/off, 1/0; empty is false), or `default`."""
    raw = env.get(name)
    if raw is None:
        return default
    if raw.strip().lower() in _TRUE:
        return True
    if raw.strip().lower() in _FALSE:
        return False
    raise error(f"{name}={raw!r} is not a boolean", hint="use true or false")


def env_optional_bool(env: Mapping[str, str], name: str, *, error: ErrorFactory) -> bool | None:
    """None when `name` is unset or empty, else env_bool."""
    return None if not env.get(name) else env_bool(env, name, False, error=error)


async def _until_signalled(serve: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(stop)


def run_main(
    service: str,
    serve: Callable[[asyncio.Event], Awaitable[None]],
    *,
    fatal: tuple[type[Exception], ...],
) -> int:
    """`python -m modelops_<service>`: run `serve(stop)` until SIGTERM/SIGINT sets `stop`.

    Returns the exit code: 0 after a drain; 1 after a start-up failure a person can fix (one of
    `fatal`, each with `message` and `hint`), logged as one `<service>.start_failed` line.
    """
    configure_logging(service)
    try:
        asyncio.run(_until_signalled(serve))
    except fatal as exc:
        log.error(
            f"{service}.start_failed",
            error=getattr(exc, "message", str(exc)),
            hint=getattr(exc, "hint", None),
        )
        return 1
    return 0
