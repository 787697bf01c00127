"""Submitter settings: one frozen object read from `MODELOPS_*` environment variables once.

Defaults suit the embedded stack (`modelops up`): NATS on localhost, bundles in an OCI layout
folder and blobs in a folder under `.modelops/`, runners as local processes. A full deployment
changes only the environment. `runner_*` values are what the runners are told, for when they
reach NATS, the blob store or the registry at other addresses than the submitter does (pods in
a cluster); unset, they are the submitter's own.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .errors import ConfigError

__all__ = ["KubernetesSettings", "Settings"]

LauncherName = Literal["local", "kubernetes"]


def _list(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def _command(value: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    """A command as a JSON list (`["python", "-m", "x"]`) or a shell-quoted string."""
    if not value:
        return default
    if value.lstrip().startswith("["):
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            raise ConfigError(f"runner command {value!r} is not a JSON list: {exc}") from exc
        if (
            not isinstance(parsed, list)
            or not all(isinstance(p, str) for p in parsed)
            or not parsed
        ):
            raise ConfigError(f"runner command {value!r} must be a non-empty list of strings")
        return tuple(parsed)
    return tuple(shlex.split(value))


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not a number") from exc
    if value < 0:
        raise ConfigError(f"{name}={raw!r} must not be negative")
    return value


@dataclass(frozen=True)
class KubernetesSettings:
    """How the kubernetes launcher writes a runner Job (see launchers/kubernetes.py)."""

    namespace: str = "modelops"
    image: str = "modelops:latest"
    image_pull_policy: str = "IfNotPresent"
    service_account: str = "modelops-runner"
    command: tuple[str, ...] = ("python", "-m", "modelops_runner")
    env_from_secrets: tuple[str, ...] = ()
    env_from_config_maps: tuple[str, ...] = ()
    job_name_prefix: str = "mops-"
    ttl_seconds_after_finished: int = 3600
    active_deadline_seconds: int = 7 * 24 * 3600
    backoff_limit_per_index: int = 2
    # Where the client finds the API: an explicit URL (tests, a proxy), else in-cluster config
    # when running in a pod, else the kubeconfig's current context.
    api_host: str | None = None
    kubeconfig: str | None = None
    context: str | None = None
    bundle_cache: str = "/tmp/modelops-bundles"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> KubernetesSettings:
        d = cls()
        return cls(
            namespace=env.get("MODELOPS_K8S_NAMESPACE") or d.namespace,
            image=env.get("MODELOPS_RUNNER_IMAGE") or d.image,
            image_pull_policy=env.get("MODELOPS_K8S_IMAGE_PULL_POLICY") or d.image_pull_policy,
            service_account=env.get("MODELOPS_K8S_SERVICE_ACCOUNT") or d.service_account,
            command=_command(env.get("MODELOPS_K8S_RUNNER_COMMAND"), d.command),
            env_from_secrets=_list(env.get("MODELOPS_K8S_ENV_FROM_SECRETS")),
            env_from_config_maps=_list(env.get("MODELOPS_K8S_ENV_FROM_CONFIG_MAPS")),
            job_name_prefix=env.get("MODELOPS_K8S_JOB_PREFIX", d.job_name_prefix),
            ttl_seconds_after_finished=int(
                _number(env, "MODELOPS_K8S_TTL_SECONDS", d.ttl_seconds_after_finished)
            ),
            active_deadline_seconds=int(
                _number(env, "MODELOPS_K8S_ACTIVE_DEADLINE_SECONDS", d.active_deadline_seconds)
            ),
            backoff_limit_per_index=int(
                _number(env, "MODELOPS_K8S_BACKOFF_LIMIT_PER_INDEX", d.backoff_limit_per_index)
            ),
            api_host=env.get("MODELOPS_K8S_API") or None,
            kubeconfig=env.get("KUBECONFIG") or None,
            context=env.get("MODELOPS_K8S_CONTEXT") or None,
            bundle_cache=env.get("MODELOPS_K8S_BUNDLE_CACHE") or d.bundle_cache,
        )


@dataclass(frozen=True)
class Settings:
    """Everything the submitter reads from its environment."""

    state_dir: Path = field(default_factory=lambda: Path(".modelops").absolute())
    nats_url: str = "nats://127.0.0.1:4222"
    nats_creds: str | None = None
    nats_user: str | None = None
    nats_password: str | None = None
    blob_store: str = ""
    bundle_store: str = ""
    s3_endpoint: str | None = None
    launcher: LauncherName = "local"
    # What runners are told (defaults: the submitter's own values).
    runner_nats_url: str | None = None
    runner_blob_store: str | None = None
    runner_bundle_store: str | None = None
    runner_s3_endpoint: str | None = None
    # Local launcher: the runner command; bundle cache shared by the runners on this host.
    runner_command: tuple[str, ...] = (sys.executable, "-m", "modelops_runner")
    bundle_cache: Path | None = None
    local_stop_grace_s: float = 5.0
    # The job's task consumer: a runner heartbeats (`in_progress`) long tasks, so ack_wait is
    # how long a crashed runner's tasks wait before another runner gets them, not a task limit.
    task_ack_wait_s: float = 30.0
    # Command handling: ack_wait covers a large submit because the handler heartbeats.
    command_ack_wait_s: float = 30.0
    command_max_deliver: int = 5
    event_ack_wait_s: float = 30.0
    # Enqueue: publishes in flight before waiting for PubAcks (bounded memory, pipelined).
    publish_max_pending: int = 2048
    progress_interval_s: float = 0.5  # at most 2 JobProgress per second per job
    kubernetes: KubernetesSettings = field(default_factory=KubernetesSettings)

    def __post_init__(self) -> None:
        if not self.blob_store:
            object.__setattr__(self, "blob_store", f"file://{self.state_dir / 'blobs'}")
        if not self.bundle_store:
            object.__setattr__(self, "bundle_store", f"oci-layout:{self.state_dir / 'oci'}")
        if self.bundle_cache is None:
            object.__setattr__(self, "bundle_cache", self.state_dir / "bundle-cache")
        for name in ("nats_user", "nats_password"):
            if set(getattr(self, name) or "") & set("/?#@:" if name == "nats_user" else "/?#"):
                raise ConfigError(
                    f"MODELOPS_{name.upper()} contains '/', '?' or '#'"
                    + (" or '@', ':'" if name == "nats_user" else ""),
                    hint="use a password without them, or a .creds file (MODELOPS_NATS_CREDS)",
                )
        if self.launcher not in ("local", "kubernetes"):
            raise ConfigError(
                f"launcher {self.launcher!r} is not 'local' or 'kubernetes'",
                hint="set MODELOPS_LAUNCHER=local or MODELOPS_LAUNCHER=kubernetes",
            )

    @property
    def nats_connect_url(self) -> str:
        """`nats_url` with the user and password in it, when they are set (never logged).

        nats-py reads them back from the URL without percent-decoding, so they go in as they
        are; the characters that would end the URL's user part are refused in __post_init__.
        """
        if not self.nats_user:
            return self.nats_url
        scheme, sep, rest = self.nats_url.partition("://")
        if not sep:
            scheme, rest = "nats", self.nats_url
        rest = rest.rpartition("@")[2]  # credentials in the settings win over the URL's
        return f"{scheme}://{self.nats_user}:{self.nats_password or ''}@{rest}"

    @property
    def jobs_dir(self) -> Path:
        """Local launcher logs and pid files: `<state>/jobs/<job_id>/`."""
        return self.state_dir / "jobs"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        state = Path(env.get("MODELOPS_STATE_DIR") or ".modelops").expanduser().absolute()
        d = cls(state_dir=state)
        return cls(
            state_dir=state,
            nats_url=env.get("MODELOPS_NATS_URL") or d.nats_url,
            nats_creds=env.get("MODELOPS_NATS_CREDS") or None,
            nats_user=env.get("MODELOPS_NATS_USER") or None,
            nats_password=env.get("MODELOPS_NATS_PASSWORD") or None,
            blob_store=env.get("MODELOPS_BLOB_STORE") or d.blob_store,
            bundle_store=env.get("MODELOPS_BUNDLE_STORE") or d.bundle_store,
            s3_endpoint=env.get("MODELOPS_S3_ENDPOINT") or None,
            launcher=(env.get("MODELOPS_LAUNCHER") or d.launcher),  # type: ignore[arg-type]
            runner_nats_url=env.get("MODELOPS_RUNNER_NATS_URL") or None,
            runner_blob_store=env.get("MODELOPS_RUNNER_BLOB_STORE") or None,
            runner_bundle_store=env.get("MODELOPS_RUNNER_BUNDLE_STORE") or None,
            runner_s3_endpoint=env.get("MODELOPS_RUNNER_S3_ENDPOINT") or None,
            runner_command=_command(env.get("MODELOPS_RUNNER_COMMAND"), d.runner_command),
            bundle_cache=Path(env["MODELOPS_BUNDLE_CACHE"])
            if env.get("MODELOPS_BUNDLE_CACHE")
            else None,
            task_ack_wait_s=_number(env, "MODELOPS_TASK_ACK_WAIT_S", d.task_ack_wait_s),
            publish_max_pending=int(
                _number(env, "MODELOPS_PUBLISH_MAX_PENDING", d.publish_max_pending)
            )
            or d.publish_max_pending,
            progress_interval_s=_number(env, "MODELOPS_PROGRESS_INTERVAL_S", d.progress_interval_s),
            kubernetes=KubernetesSettings.from_env(env),
        )
