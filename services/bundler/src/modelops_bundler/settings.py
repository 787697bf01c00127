"""Bundler settings, read once from `MODELOPS_*` environment variables.

Defaults suit the embedded stack: bundles go to an OCI image-layout folder. Set
MODELOPS_BUNDLE_STORE to a registry (`host:port`, `https://host`) for a full deployment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from modelops_runtime.service import (
    NatsSettings,
    env_bool,
    env_float,
    env_int,
    env_optional_bool,
    nats_from_env,
)

from .errors import SettingsError

__all__ = ["Settings"]


@dataclass(frozen=True)
class Settings(NatsSettings):
    """What the bundler needs to run. `from_env()` is the only constructor services use."""

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
        err = SettingsError
        return cls(
            **nats_from_env(env),
            bundle_store=env.get("MODELOPS_BUNDLE_STORE") or cls.bundle_store,
            store_insecure=env_optional_bool(env, "MODELOPS_BUNDLE_STORE_INSECURE", error=err),
            durable=env.get("MODELOPS_BUNDLER_DURABLE") or cls.durable,
            build_on_register=env_bool(env, "MODELOPS_BUNDLER_BUILD_ON_REGISTER", False, error=err),
            auto_repository=env.get("MODELOPS_BUNDLER_REPOSITORY") or "",
            ack_wait_s=env_float(env, "MODELOPS_BUNDLER_ACK_WAIT_S", cls.ack_wait_s, error=err),
            max_deliver=env_int(env, "MODELOPS_BUNDLER_MAX_DELIVER", cls.max_deliver, error=err),
            max_ack_pending=env_int(
                env, "MODELOPS_BUNDLER_MAX_ACK_PENDING", cls.max_ack_pending, error=err
            ),
            nak_delay_s=env_float(env, "MODELOPS_BUNDLER_NAK_DELAY_S", cls.nak_delay_s, error=err),
        )
