"""Defaulting a created Job the way the API server does (`SetDefaults_Job` + strategy).

A launcher that reads back its Job sees what a cluster would return: backoffLimit 6,
parallelism 1, the generated selector and controller labels, container pull policy, and
so on. Only fields someone may read back are defaulted; the rest stay absent.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from .meta import CONTROLLER_UID_KEYS, JOB_NAME_KEYS, format_time

__all__ = ["MAX_INT32", "default_job"]

MAX_INT32 = 2_147_483_647


def default_job(
    job: dict[str, Any], *, namespace: str, name: str, uid: str, now: datetime
) -> dict[str, Any]:
    """Return a defaulted copy of a validated Job manifest, with status `{}`."""
    out = copy.deepcopy(job)
    out["apiVersion"], out["kind"] = "batch/v1", "Job"
    meta = out.setdefault("metadata", {})
    meta.update(
        name=name,
        namespace=namespace,
        uid=uid,
        creationTimestamp=format_time(now),
        generation=1,
    )
    spec = out["spec"]
    template_meta = spec["template"].setdefault("metadata", {})
    if not meta.get("labels") and template_meta.get("labels"):
        meta["labels"] = dict(template_meta["labels"])
    _default_spec(spec)
    controller_labels = {key: uid for key in CONTROLLER_UID_KEYS}
    controller_labels.update({key: name for key in JOB_NAME_KEYS})
    template_meta["labels"] = {**(template_meta.get("labels") or {}), **controller_labels}
    if not spec.get("manualSelector"):
        spec["selector"] = {"matchLabels": {CONTROLLER_UID_KEYS[0]: uid}}
    _default_pod_spec(spec["template"]["spec"])
    out["status"] = {}
    return out


def _default_spec(spec: dict[str, Any]) -> None:
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = MAX_INT32 if spec.get("backoffLimitPerIndex") is not None else 6
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    policy = spec.get("podFailurePolicy")
    spec.setdefault("podReplacementPolicy", "Failed" if policy else "TerminatingOrFailed")
    for rule in (policy or {}).get("rules") or []:
        for condition in rule.get("onPodConditions") or []:
            condition.setdefault("status", "True")


def _default_pod_spec(pod_spec: dict[str, Any]) -> None:
    pod_spec.setdefault("terminationGracePeriodSeconds", 30)
    pod_spec.setdefault("dnsPolicy", "ClusterFirst")
    pod_spec.setdefault("schedulerName", "default-scheduler")
    pod_spec.setdefault("securityContext", {})
    for container in pod_spec["containers"]:
        container.setdefault("imagePullPolicy", _pull_policy(container["image"]))
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("resources", {})


def _pull_policy(image: str) -> str:
    """`Always` for `:latest` or untagged images, else `IfNotPresent` (digests included)."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else None
    return "Always" if tag in (None, "latest") else "IfNotPresent"
