"""Pods of a Job: how they are named and labelled, their environment, their status.

Pure functions over plain dicts. `new_pod` copies the Job's template with the labels,
annotations, owner reference and JOB_COMPLETION_INDEX variable the job controller adds;
`container_env` resolves what the kubelet would put in the container's environment
(envFrom, valueFrom, `$(VAR)` expansion); the `*_status` helpers give the pod the status a
kubelet would report at each step.
"""

from __future__ import annotations

import base64
import copy
import os
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from .meta import JOB_INDEX_KEY, format_time, name_suffix, new_uid

__all__ = [
    "NODE_NAME",
    "PodConfigError",
    "container_argv",
    "container_env",
    "decode_data",
    "deleting",
    "new_pod",
    "pod_index",
    "running_status",
    "terminated_status",
    "waiting_status",
]

NODE_NAME = "modelops-test-node"
_LOCAL_IP = "127.0.0.1"
_REF_RE = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")
_BRACKET_RE = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")

# (resource kind, namespace, name) -> decoded data, or None when the object does not exist.
Lookup = Callable[[str, str, str], Mapping[str, str] | None]


class PodConfigError(Exception):
    """The kubelet cannot build the container: `reason` is the waiting/terminated reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def new_pod(job: dict[str, Any], index: int | None, now: datetime) -> dict[str, Any]:
    """A Pending pod for one index (or a NonIndexed slot) of `job`."""
    job_meta, template = job["metadata"], job["spec"]["template"]
    job_name = job_meta["name"]
    prefix = f"{job_name}-{index}-" if index is not None else f"{job_name}-"
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    annotations = dict((template.get("metadata") or {}).get("annotations") or {})
    spec = copy.deepcopy(template["spec"])
    spec["nodeName"] = NODE_NAME
    spec.setdefault("serviceAccountName", "default")
    if index is not None:
        labels[JOB_INDEX_KEY] = annotations[JOB_INDEX_KEY] = str(index)
        spec["hostname"] = f"{job_name}-{index}"
        for container in spec["containers"]:
            env = container.setdefault("env", [])
            if not any(v.get("name") == "JOB_COMPLETION_INDEX" for v in env):
                env.append(
                    {
                        "name": "JOB_COMPLETION_INDEX",
                        "valueFrom": {
                            "fieldRef": {
                                "apiVersion": "v1",
                                "fieldPath": f"metadata.labels['{JOB_INDEX_KEY}']",
                            }
                        },
                    }
                )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": prefix + name_suffix(),
            "generateName": prefix,
            "namespace": job_meta["namespace"],
            "uid": new_uid(),
            "creationTimestamp": format_time(now),
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": job_name,
                    "uid": job_meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
        "status": {
            "phase": "Pending",
            "qosClass": "BestEffort",
            "conditions": [_condition("PodScheduled", "True", now)],
        },
    }


def pod_index(pod: dict[str, Any]) -> int | None:
    """The completion index of an Indexed Job's pod, None for NonIndexed pods."""
    index = (pod["metadata"].get("annotations") or {}).get(JOB_INDEX_KEY)
    return int(index) if index is not None else None


def _condition(kind: str, value: str, now: datetime) -> dict[str, Any]:
    return {
        "type": kind,
        "status": value,
        "lastProbeTime": None,
        "lastTransitionTime": format_time(now),
    }


def _expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: defined names are replaced, `$$` escapes a dollar."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _REF_RE.sub(sub, text)


def container_env(pod: dict[str, Any], base: Mapping[str, str], lookup: Lookup) -> dict[str, str]:
    """The first container's environment: `base` (image env), envFrom, then env."""
    container = pod["spec"]["containers"][0]
    namespace = pod["metadata"]["namespace"]
    env = dict(base)
    for source in container.get("envFrom") or []:
        kind, ref = (
            ("secrets", source["secretRef"])
            if source.get("secretRef")
            else ("configmaps", source["configMapRef"])
        )
        data = lookup(kind, namespace, ref["name"])
        if data is None:
            if ref.get("optional"):
                continue
            raise PodConfigError(
                "CreateContainerConfigError", f'{kind[:-1]} "{ref["name"]}" not found'
            )
        prefix = source.get("prefix", "")
        env.update({prefix + k: v for k, v in data.items()})
    for var in container.get("env") or []:
        if "valueFrom" in var and var["valueFrom"] is not None:
            value = _value_from(var["valueFrom"], pod, container, lookup)
            if value is None:
                continue
            env[var["name"]] = value
        else:
            env[var["name"]] = _expand(var.get("value", ""), env)
    return env


def _value_from(
    source: dict[str, Any], pod: dict[str, Any], container: dict[str, Any], lookup: Lookup
) -> str | None:
    namespace = pod["metadata"]["namespace"]
    if (ref := source.get("fieldRef")) is not None:
        return _field_value(pod, ref["fieldPath"])
    if (ref := source.get("resourceFieldRef")) is not None:
        return _resource_value(container, ref["resource"])
    kind, ref = (
        ("secrets", source["secretKeyRef"])
        if source.get("secretKeyRef")
        else ("configmaps", source["configMapKeyRef"])
    )
    data = lookup(kind, namespace, ref["name"])
    label = "Secret" if kind == "secrets" else "ConfigMap"
    if data is None or ref["key"] not in data:
        if ref.get("optional"):
            return None
        if data is None:
            raise PodConfigError(
                "CreateContainerConfigError", f'{kind[:-1]} "{ref["name"]}" not found'
            )
        raise PodConfigError(
            "CreateContainerConfigError",
            f"couldn't find key {ref['key']} in {label} {namespace}/{ref['name']}",
        )
    return data[ref["key"]]


def _field_value(pod: dict[str, Any], path: str) -> str:
    meta = pod["metadata"]
    simple = {
        "metadata.name": meta["name"],
        "metadata.namespace": meta["namespace"],
        "metadata.uid": meta["uid"],
        "spec.nodeName": pod["spec"].get("nodeName", NODE_NAME),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default"),
        "status.podIP": _LOCAL_IP,
        "status.hostIP": _LOCAL_IP,
        "status.podIPs": _LOCAL_IP,
        "status.hostIPs": _LOCAL_IP,
    }
    if path in simple:
        return simple[path]
    if m := _BRACKET_RE.match(path):
        return (meta.get(m.group(1)) or {}).get(m.group(2), "")
    raise PodConfigError(
        "CreateContainerConfigError", f'unsupported fieldPath "{path}" in the test API server'
    )


def _resource_value(container: dict[str, Any], resource: str) -> str:
    """Limits/requests as written in the manifest, else the node's capacity."""
    section, _, name = resource.partition(".")
    value = ((container.get("resources") or {}).get(section) or {}).get(name)
    if value is not None:
        return str(value)
    if name == "cpu":
        return str(os.cpu_count() or 1)
    if name == "memory":
        return str(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    return "0"


def container_argv(
    container: dict[str, Any], env: Mapping[str, str], entrypoints: Mapping[str, list[str]]
) -> list[str]:
    """command + args with `$(VAR)` expanded; the image entrypoint stands in for a missing
    command only if the test registered one for that image."""
    command = container.get("command")
    if not command:
        command = entrypoints.get(container["image"])
        if not command:
            raise PodConfigError(
                "StartError",
                f"container {container['name']} has no command and the test API server knows "
                f"no entrypoint for image {container['image']!r}; set command in the manifest "
                "or pass image_entrypoints to KubeApiTestServer",
            )
    return [_expand(part, env) for part in [*command, *(container.get("args") or [])]]


def decode_data(obj: dict[str, Any]) -> dict[str, str]:
    """Secret `data` is base64 in the API; ConfigMap `data` is plain."""
    if obj.get("kind") == "Secret":
        return {
            k: base64.b64decode(v).decode("utf-8", "replace")
            for k, v in (obj.get("data") or {}).items()
        }
    return dict(obj.get("data") or {})


def _container_status(pod: dict[str, Any], state: dict[str, Any], **extra: Any) -> dict[str, Any]:
    container = pod["spec"]["containers"][0]
    return {
        "name": container["name"],
        "image": container["image"],
        "imageID": "",
        "restartCount": 0,
        "state": state,
        **extra,
    }


def waiting_status(pod: dict[str, Any], reason: str, message: str) -> dict[str, Any]:
    out = copy.deepcopy(pod)
    out["status"]["containerStatuses"] = [
        _container_status(
            pod, {"waiting": {"reason": reason, "message": message}}, ready=False, started=False
        )
    ]
    return out


def running_status(pod: dict[str, Any], pid: int, now: datetime) -> dict[str, Any]:
    out = copy.deepcopy(pod)
    stamp = format_time(now)
    out["status"].update(
        phase="Running",
        startTime=stamp,
        podIP=_LOCAL_IP,
        hostIP=_LOCAL_IP,
        podIPs=[{"ip": _LOCAL_IP}],
        hostIPs=[{"ip": _LOCAL_IP}],
        conditions=[
            _condition(k, "True", now)
            for k in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
        ],
        containerStatuses=[
            _container_status(
                pod,
                {"running": {"startedAt": stamp}},
                ready=True,
                started=True,
                containerID=f"local://{pid}",
            )
        ],
    )
    return out


def terminated_status(
    pod: dict[str, Any],
    returncode: int,
    now: datetime,
    *,
    reason: str | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    """Succeeded on 0, else Failed; death by signal N is exit code 128+N, as in a container."""
    out = copy.deepcopy(pod)
    exit_code = returncode if returncode >= 0 else 128 - returncode
    started = (
        ((pod["status"].get("containerStatuses") or [{}])[0].get("state") or {})
        .get("running", {})
        .get("startedAt")
    )
    terminated: dict[str, Any] = {
        "exitCode": exit_code,
        "reason": reason or ("Completed" if exit_code == 0 else "Error"),
        "finishedAt": format_time(now),
    }
    if started:
        terminated["startedAt"] = started
    if returncode < 0:
        terminated["signal"] = -returncode
    if message:
        terminated["message"] = message
    previous = (pod["status"].get("containerStatuses") or [{}])[0].get("containerID")
    extra = {"containerID": previous} if previous else {}
    out["status"]["phase"] = "Succeeded" if exit_code == 0 else "Failed"
    out["status"]["conditions"] = [
        _condition("PodScheduled", "True", now),
        _condition("Initialized", "True", now),
        _condition("ContainersReady", "False", now),
        _condition("Ready", "False", now),
    ]
    out["status"]["containerStatuses"] = [
        _container_status(pod, {"terminated": terminated}, ready=False, started=False, **extra)
    ]
    return out


def deleting(pod: dict[str, Any], now: datetime, grace: int) -> dict[str, Any]:
    out = copy.deepcopy(pod)
    out["metadata"]["deletionTimestamp"] = format_time(now)
    out["metadata"]["deletionGracePeriodSeconds"] = grace
    return out
