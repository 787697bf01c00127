"""Bundler settings, read once from `MODELOPS_*` environment variables.

Defaults suit the embedded stack: bundles go to an OCI image-layout folder. Set
MODELOPS_BUNDLE_STORE to a registry (`host:port`, `https://host`) for a full deployment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import SettingsError

__all__ = ["Settings"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


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


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    if raw.strip().lower() in _TRUE:
        return True
    if raw.strip().lower() in _FALSE:
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean", hint="use true or false")


def _optional_bool(env: Mapping[str, str], name: str) -> bool | None:
    return None if not env.get(name) else _bool(env, name, False)


@dataclass(frozen=True)
class Settings:
    """What the bundler needs to run. `from_env()` is the only constructor services use."""

    nats_url: str = "nats://127.0.0.1:4222"
    nats_creds: str | None = None  # a NATS .creds file
    # One NATS user per component in a deployment (deploy/nats/nats-server.conf).
    nats_user: str | None = None
    nats_password: str | None = field(default=None, repr=False)
    # Where bundles go: `oci-layout:PATH` (or a path) or a registry `host[:port]`.
    bundle_store: str = "oci-layout:.modelops/oci"
    # None: plain HTTP for loopback registries only (see modelops_bundle.stores.open_store).
    store_insecure: bool | None = None
    durable: str = "bundler"
    # Also build when a model is registered (its blobs must already be in the store).
    build_on_register: bool = False
    # Repository of those builds; empty: the project name.
    auto_repository: str = ""
    # Writing config + manifest is quick, but a slow registry gets room before redelivery.
    ack_wait_s: float = 120.0
    max_deliver: int = 5
    max_ack_pending: int = 16
    nak_delay_s: float = 2.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            nats_url=env.get("MODELOPS_NATS_URL") or cls.nats_url,
            nats_creds=env.get("MODELOPS_NATS_CREDS") or None,
            nats_user=env.get("MODELOPS_NATS_USER") or None,
            nats_password=env.get("MODELOPS_NATS_PASSWORD") or None,
            bundle_store=env.get("MODELOPS_BUNDLE_STORE") or cls.bundle_store,
            store_insecure=_optional_bool(env, "MODELOPS_BUNDLE_STORE_INSECURE"),
            durable=env.get("MODELOPS_BUNDLER_DURABLE") or cls.durable,
            build_on_register=_bool(env, "MODELOPS_BUNDLER_BUILD_ON_REGISTER", False),
            auto_repository=env.get("MODELOPS_BUNDLER_REPOSITORY") or "",
            ack_wait_s=_float(env, "MODELOPS_BUNDLER_ACK_WAIT_S", cls.ack_wait_s),
            max_deliver=_int(env, "MODELOPS_BUNDLER_MAX_DELIVER", cls.max_deliver),
            max_ack_pending=_int(env, "MODELOPS_BUNDLER_MAX_ACK_PENDING", cls.max_ack_pending),
            nak_delay_s=_float(env, "MODELOPS_BUNDLER_NAK_DELAY_S", cls.nak_delay_s),
        )
