"""Kubernetes launcher: one Indexed Job per SimJob, `parallelism` = runner count.

Every pod runs one runner that drains the job's queue, never one pod per task. The manifest is
built by a pure function (`job_manifest`) so tests check it field by field and validate it
offline; the launcher only sends it with the official `kubernetes` client (which is
synchronous: calls run in a thread).

Failure handling in the manifest: a pod evicted or preempted (condition DisruptionTarget) is
ignored and replaced without counting against the backoff; a runner exiting with code 2 (its
configuration is wrong: retrying cannot help) fails its index at once; other failures retry up
to `backoffLimitPerIndex` per index.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
import urllib3.exceptions
from kubernetes.client import ApiClient, BatchV1Api, V1DeleteOptions
from kubernetes.client.exceptions import ApiException

from ..errors import LaunchError
from ..settings import KubernetesSettings
from .base import LaunchRequest

__all__ = ["CONFIG_ERROR_EXIT_CODE", "CONTAINER", "KubernetesLauncher", "job_manifest", "job_name"]

log = structlog.get_logger(__name__)

CONTAINER = "runner"
CONFIG_ERROR_EXIT_CODE = 2  # the runner's exit code for a configuration error
RUNNER_LABEL = {"app.kubernetes.io/name": "modelops-runner"}
JOB_ID_LABEL = "modelops.io/job-id"


def job_name(k8s: KubernetesSettings, job_id: str) -> str:
    """The Kubernetes Job's name (job ids are DNS labels of at most 40 chars)."""
    return f"{k8s.job_name_prefix}{job_id}"


def job_manifest(k8s: KubernetesSettings, request: LaunchRequest) -> dict[str, Any]:
    """The batch/v1 Job that runs `request.runners` runners of one job."""
    labels = {
        **RUNNER_LABEL,
        "app.kubernetes.io/part-of": "modelops",
        "app.kubernetes.io/managed-by": "modelops-submitter",
        JOB_ID_LABEL: request.job_id,
    }
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(request.env.items())]
    env.append(
        {"name": "MODELOPS_RUNNER_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    )
    env_from: list[dict[str, Any]] = [{"secretRef": {"name": s}} for s in k8s.env_from_secrets]
    env_from += [{"configMapRef": {"name": c}} for c in k8s.env_from_config_maps]
    quantities = {"cpu": request.options.resources.cpu, "memory": request.options.resources.memory}
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": k8s.image,
        "imagePullPolicy": k8s.image_pull_policy,
        "command": list(k8s.command),
        "env": env,
        # requests = limits: the scheduler reserves what the workers will use, and a runner
        # over its memory is OOM-killed alone rather than starving its neighbours
        "resources": {"requests": dict(quantities), "limits": dict(quantities)},
    }
    if env_from:
        container["envFrom"] = env_from
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(k8s, request.job_id),
            "namespace": k8s.namespace,
            "labels": labels,
        },
        "spec": {
            "completionMode": "Indexed",
            "completions": request.runners,
            "parallelism": request.runners,
            "backoffLimitPerIndex": k8s.backoff_limit_per_index,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "Ignore",
                        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                    },
                    {
                        "action": "FailIndex",
                        "onExitCodes": {
                            "containerName": CONTAINER,
                            "operator": "In",
                            "values": [CONFIG_ERROR_EXIT_CODE],
                        },
                    },
                ]
            },
            "ttlSecondsAfterFinished": k8s.ttl_seconds_after_finished,
            "activeDeadlineSeconds": k8s.active_deadline_seconds,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": k8s.service_account,
                    "automountServiceAccountToken": False,  # runners never call the API
                    "containers": [container],
                },
            },
        },
    }


def _launch_error(what: str, exc: Exception) -> LaunchError:
    if isinstance(exc, ApiException):
        status = exc.status or 0
        return LaunchError(
            f"Kubernetes refused to {what}: {status} {exc.reason}: {(exc.body or '')[:500]}",
            hint="check the submitter's RBAC (create/delete jobs) and MODELOPS_K8S_* settings",
            transient=status >= 500 or status == 429,
        )
    return LaunchError(
        f"cannot reach the Kubernetes API to {what}: {exc}",
        hint="is the API server reachable? check MODELOPS_K8S_API or the kubeconfig",
        transient=True,
    )


class KubernetesLauncher:
    """Creates and deletes runner Jobs through the official client."""

    name = "kubernetes"

    def __init__(self, api_client: ApiClient, settings: KubernetesSettings) -> None:
        self.api_client = api_client
        self.settings = settings
        self.batch = BatchV1Api(api_client)

    async def launch(self, request: LaunchRequest) -> None:
        manifest = job_manifest(self.settings, request)
        name = manifest["metadata"]["name"]
        try:
            await asyncio.to_thread(
                self.batch.create_namespaced_job, self.settings.namespace, manifest
            )
        except ApiException as exc:
            if exc.status == 409:  # created by an earlier attempt of the same submit
                log.info("launcher.k8s.already_exists", job_id=request.job_id, k8s_job=name)
                return
            raise _launch_error(f"create Job {name}", exc) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _launch_error(f"create Job {name}", exc) from exc
        log.info(
            "launcher.k8s.created",
            job_id=request.job_id,
            k8s_job=name,
            namespace=self.settings.namespace,
            runners=request.runners,
        )

    async def stop(self, job_id: str) -> None:
        name = job_name(self.settings, job_id)
        try:
            await asyncio.to_thread(
                self.batch.delete_namespaced_job,
                name,
                self.settings.namespace,
                body=V1DeleteOptions(propagation_policy="Background"),
            )
        except ApiException as exc:
            if exc.status == 404:
                return  # finished and collected, or never created
            raise _launch_error(f"delete Job {name}", exc) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _launch_error(f"delete Job {name}", exc) from exc
        log.info("launcher.k8s.deleted", job_id=job_id, k8s_job=name)

    async def has_runners(self, job_id: str) -> bool:
        """The Job exists (Kubernetes keeps its pods going whatever the submitter does)."""
        name = job_name(self.settings, job_id)
        try:
            await asyncio.to_thread(self.batch.read_namespaced_job, name, self.settings.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise _launch_error(f"read Job {name}", exc) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _launch_error(f"read Job {name}", exc) from exc
        return True

    async def close(self) -> None:
        """Close the client; runner Jobs live on in the cluster."""
        await asyncio.to_thread(self.api_client.close)
