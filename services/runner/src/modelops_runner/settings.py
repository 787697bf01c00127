"""Runner settings, read once from the environment a launcher (local or Kubernetes) sets.

Required: MODELOPS_JOB_ID, MODELOPS_BLOB_STORE. Everything else has a default that suits the
embedded stack. A missing or malformed value is a ConfigError naming the variable, which
the entry point turns into exit status 2 (a restart cannot fix it).

    MODELOPS_NATS_URL        nats://127.0.0.1:4222
    MODELOPS_NATS_CREDS      NATS .creds file (optional)
    MODELOPS_JOB_ID          the job this runner works for
    MODELOPS_JOB_SPEC        blob URI (or key) of spec.json; default jobs/<job_id>/spec.json
    MODELOPS_BLOB_STORE      blob store base URI (s3://bucket/prefix or file:///dir)
    MODELOPS_S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION   (S3 only)
    MODELOPS_BUNDLE_STORE    registry host[:port] or oci-layout:PATH; default the bundle ref's host
    MODELOPS_BUNDLE_CACHE    bundle cache folder shared by the runners of a host
    MODELOPS_WORKERS         worker processes; 0 or unset = the job's option, else usable cores
    MODELOPS_RUNNER_ID       default <hostname>-<pid>; JOB_COMPLETION_INDEX is appended when set
    MODELOPS_MEMORY_LIMIT    address-space limit per worker: bytes or 512Mi / 2Gi (optional)
    MODELOPS_RUNNER_FETCH_TIMEOUT_S   how long one fetch waits for tasks (default 1)
    MODELOPS_RUNNER_SHUTDOWN_GRACE_S  on SIGTERM, how long running tasks may finish (default 20)
    MODELOPS_RUNNER_STORE_WINDOW_S    how long a finished task waits for others to store its
                                      result with (default 0.5; 0: store at once)
    MODELOPS_RUNNER_ENQUEUE_WAIT_S    how long an empty queue is waited on before the submitter
                                      has queued every task (default 300; then exit 1)
"""

from __future__ import annotations

import math
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from modelops_contracts.domain import JOB_ID_PATTERN
from modelops_contracts.jobs import blob_keys
from modelops_runtime.blobstore import S3Settings

from .errors import ConfigError

__all__ = ["RunnerSettings", "parse_quantity", "usable_cores"]

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
_QUANTITY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|K|M|G|T|k)?\s*$")
_UNITS = {
    None: 1,
    "k": 1000,
    "K": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
}


def parse_quantity(text: str, *, name: str) -> int:
    """Bytes from `1073741824`, `512Mi` or `2G` (Kubernetes quantity suffixes)."""
    m = _QUANTITY_RE.match(text)
    if not m:
        raise ConfigError(
            f"{name}={text!r} is not a size", hint="write bytes, or a quantity like 512Mi or 2Gi"
        )
    return int(float(m[1]) * _UNITS[m[2]])


def _cgroup_cpus() -> float | None:
    """The cgroup v2 CPU quota in cores (a container's limit), or None when unlimited."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return int(quota) / int(period)


def usable_cores() -> int:
    """Cores this process may use: CPU affinity, capped by a container's CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = _cgroup_cpus()
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, *, zero_ok: bool = False) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        kind = "a non-negative" if zero_ok else "a positive"
        raise ConfigError(f"{name}={raw!r} must be {kind} number of seconds")
    return value


def _required(env: Mapping[str, str], name: str, hint: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is not set", hint=hint)
    return value


def _runner_id(env: Mapping[str, str]) -> str:
    base = env.get("MODELOPS_RUNNER_ID", "").strip() or f"{socket.gethostname()}-{os.getpid()}"
    index = env.get("JOB_COMPLETION_INDEX", "").strip()
    return f"{base}/{index}" if index else base


def _default_cache(env: Mapping[str, str]) -> Path:
    home = env.get("HOME", "").strip() or str(Path.home())
    root = env.get("XDG_CACHE_HOME", "").strip() or str(Path(home) / ".cache")
    return Path(root) / "modelops" / "bundles"


@dataclass(frozen=True, slots=True)
class RunnerSettings:
    """Everything the runner process is told from outside; see the module docstring."""

    job_id: str
    blob_store: str
    job_spec: str
    bundle_cache: Path
    runner_id: str
    nats_url: str = DEFAULT_NATS_URL
    nats_creds: str | None = None
    bundle_store: str | None = None
    workers: int = 0
    memory_limit_bytes: int | None = None
    fetch_timeout_s: float = 1.0
    shutdown_grace_s: float = 20.0
    store_window_s: float = 0.5
    enqueue_wait_s: float = 300.0
    s3: S3Settings = field(default_factory=S3Settings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RunnerSettings:
        """Read and check every variable; ConfigError names the first bad one."""
        env = os.environ if env is None else env
        job_id = _required(
            env, "MODELOPS_JOB_ID", "the launcher sets it; run runners through 'modelops submit'"
        )
        if not re.match(JOB_ID_PATTERN, job_id):
            raise ConfigError(
                f"MODELOPS_JOB_ID={job_id!r} is not a job id",
                hint="job ids are lowercase DNS labels like job-1a2b3c4d5e6f",
            )
        blob_store = _required(
            env,
            "MODELOPS_BLOB_STORE",
            "set it to the store the submitter uses (s3://… or file://…)",
        )
        memory = env.get("MODELOPS_MEMORY_LIMIT", "").strip()
        return cls(
            job_id=job_id,
            blob_store=blob_store.rstrip("/"),
            job_spec=env.get("MODELOPS_JOB_SPEC", "").strip() or blob_keys.job_spec(job_id),
            bundle_cache=Path(
                env.get("MODELOPS_BUNDLE_CACHE", "").strip() or _default_cache(env)
            ).expanduser(),
            runner_id=_runner_id(env),
            nats_url=env.get("MODELOPS_NATS_URL", "").strip() or DEFAULT_NATS_URL,
            nats_creds=env.get("MODELOPS_NATS_CREDS", "").strip() or None,
            bundle_store=env.get("MODELOPS_BUNDLE_STORE", "").strip() or None,
            workers=_int(env, "MODELOPS_WORKERS", 0),
            memory_limit_bytes=(
                parse_quantity(memory, name="MODELOPS_MEMORY_LIMIT") if memory else None
            )
            or None,  # 0 means no limit
            fetch_timeout_s=_float(env, "MODELOPS_RUNNER_FETCH_TIMEOUT_S", 1.0),
            shutdown_grace_s=_float(env, "MODELOPS_RUNNER_SHUTDOWN_GRACE_S", 20.0),
            store_window_s=_float(env, "MODELOPS_RUNNER_STORE_WINDOW_S", 0.5, zero_ok=True),
            enqueue_wait_s=_float(env, "MODELOPS_RUNNER_ENQUEUE_WAIT_S", 300.0),
            s3=S3Settings.from_env(env),
        )

    def worker_count(self, job_default: int = 0) -> int:
        """MODELOPS_WORKERS, else the job's workers_per_runner, else one per usable core."""
        return self.workers or job_default or usable_cores()
