"""Registrar settings, read once from `MODELOPS_*` environment variables.

Defaults suit the embedded stack (`modelops up`): a local nats-server and one registrar.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import SettingsError

__all__ = ["Settings"]


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise SettingsError(f"{name}={raw!r} must be positive")
    return value


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None
    if value < 1:
        raise SettingsError(f"{name}={raw!r} must be at least 1")
    return value


@dataclass(frozen=True)
class Settings:
    """What the registrar needs to run. `from_env()` is the only constructor services use."""

    nats_url: str = "nats://127.0.0.1:4222"
    nats_creds: str | None = None  # a NATS .creds file
    # One NATS user per component in a deployment (deploy/nats/nats-server.conf).
    nats_user: str | None = None
    nats_password: str | None = field(default=None, repr=False)
    durable: str = "registrar"
    # A registration is a few KV round trips: 30 s without an ack means the registrar died.
    ack_wait_s: float = 30.0
    # Deliveries before a command that keeps failing transiently is answered and dropped.
    max_deliver: int = 5
    max_ack_pending: int = 64
    # Delay before a transient failure (KV unreachable) is retried.
    nak_delay_s: float = 2.0
    # Compare-and-set attempts per delivery when concurrent registrations race on one project.
    kv_attempts: int = 32

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            nats_url=env.get("MODELOPS_NATS_URL") or cls.nats_url,
            nats_creds=env.get("MODELOPS_NATS_CREDS") or None,
            nats_user=env.get("MODELOPS_NATS_USER") or None,
            nats_password=env.get("MODELOPS_NATS_PASSWORD") or None,
            durable=env.get("MODELOPS_REGISTRAR_DURABLE") or cls.durable,
            ack_wait_s=_float(env, "MODELOPS_REGISTRAR_ACK_WAIT_S", cls.ack_wait_s),
            max_deliver=_int(env, "MODELOPS_REGISTRAR_MAX_DELIVER", cls.max_deliver),
            max_ack_pending=_int(env, "MODELOPS_REGISTRAR_MAX_ACK_PENDING", cls.max_ack_pending),
            nak_delay_s=_float(env, "MODELOPS_REGISTRAR_NAK_DELAY_S", cls.nak_delay_s),
            kv_attempts=_int(env, "MODELOPS_REGISTRAR_KV_ATTEMPTS", cls.kv_attempts),
        )
