"""The launcher interface, and the environment every runner is started with.

A runner is configured by environment only (see services/runner): where NATS, the blob store
and the bundle store are, which job it serves and where its spec is. The same variables go to
a local process and to a Kubernetes pod; only the addresses may differ (`runner_*` settings).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from modelops_contracts import LaunchOptions, blob_keys

from ..settings import Settings

__all__ = ["LaunchRequest", "Launcher", "cpu_count", "runner_env", "workers_for"]

_CPU_RE = re.compile(r"^(?P<n>[0-9]+(?:\.[0-9]+)?)(?P<milli>m)?$")


@dataclass(frozen=True)
class LaunchRequest:
    """Start `runners` runners for one job, each with `env` (plus its own runner id)."""

    job_id: str
    runners: int
    options: LaunchOptions
    env: Mapping[str, str] = field(default_factory=dict)


class Launcher(Protocol):
    """Starts and stops the runners of jobs. Both calls are idempotent."""

    name: str

    async def launch(self, request: LaunchRequest) -> None:
        """Start the job's runners; a job whose runners were already started is left alone."""
        ...

    async def stop(self, job_id: str) -> None:
        """Stop every runner of the job (none running is not an error)."""
        ...

    async def has_runners(self, job_id: str) -> bool:
        """Whether the job still has runners (running, or about to be started)."""
        ...

    async def close(self) -> None:
        """Release clients, and stop the runners this launcher owns as processes."""
        ...


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def workers_for(options: LaunchOptions, kind: Literal["local", "kubernetes"]) -> int:
    """Worker processes per runner: as asked, else what fits the runner's share of CPUs.

    In a pod, the node's core count says nothing about the pod's CPU request, so the request
    (rounded up) decides; local runners split this host's cores between them.
    """
    if options.workers_per_runner:
        return options.workers_per_runner
    if kind == "kubernetes":
        m = _CPU_RE.match(options.resources.cpu)
        if m is None:
            return 1
        cores = float(m["n"]) / (1000 if m["milli"] else 1)
        return max(1, math.ceil(cores))
    return max(1, cpu_count() // options.runners)


def runner_env(
    settings: Settings,
    *,
    job_id: str,
    options: LaunchOptions,
    kind: Literal["local", "kubernetes"],
) -> dict[str, str]:
    """The MODELOPS_* variables a runner of `job_id` needs (secrets excluded for pods)."""
    blob_store = settings.runner_blob_store or settings.blob_store
    env = {
        "MODELOPS_NATS_URL": settings.runner_nats_url or settings.nats_url,
        "MODELOPS_JOB_ID": job_id,
        "MODELOPS_JOB_SPEC": f"{blob_store}/{blob_keys.job_spec(job_id)}",
        "MODELOPS_BLOB_STORE": blob_store,
        "MODELOPS_BUNDLE_STORE": settings.runner_bundle_store or settings.bundle_store,
        "MODELOPS_WORKERS": str(workers_for(options, kind)),
    }
    s3 = settings.runner_s3_endpoint or settings.s3_endpoint
    if s3:
        env["MODELOPS_S3_ENDPOINT"] = s3
    if kind == "local":
        env["MODELOPS_BUNDLE_CACHE"] = str(settings.bundle_cache)
        if settings.nats_creds:
            env["MODELOPS_NATS_CREDS"] = settings.nats_creds
    else:
        env["MODELOPS_BUNDLE_CACHE"] = settings.kubernetes.bundle_cache
    return env
