"""Registrar settings, read once from `MODELOPS_*` environment variables.

Defaults suit the embedded stack (`modelops up`): a local nats-server and one registrar.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from modelops_runtime.service import NatsSettings, env_float, env_int, nats_from_env

from .errors import SettingsError

__all__ = ["Settings"]


@dataclass(frozen=True)
class Settings(NatsSettings):
    """What the registrar needs to run. `from_env()` is the only constructor services use."""

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
        err = SettingsError
        return cls(
            **nats_from_env(env),
            durable=env.get("MODELOPS_REGISTRAR_DURABLE") or cls.durable,
            ack_wait_s=env_float(env, "MODELOPS_REGISTRAR_ACK_WAIT_S", cls.ack_wait_s, error=err),
            max_deliver=env_int(env, "MODELOPS_REGISTRAR_MAX_DELIVER", cls.max_deliver, error=err),
            max_ack_pending=env_int(
                env, "MODELOPS_REGISTRAR_MAX_ACK_PENDING", cls.max_ack_pending, error=err
            ),
            nak_delay_s=env_float(
                env, "MODELOPS_REGISTRAR_NAK_DELAY_S", cls.nak_delay_s, error=err
            ),
            kv_attempts=env_int(env, "MODELOPS_REGISTRAR_KV_ATTEMPTS", cls.kv_attempts, error=err),
        )
