"""Job manifest validation: the rules a launcher can realistically break.

Not the whole of `pkg/apis/batch/validation`, but the checks that catch real mistakes:
missing containers or image, names and labels the API would refuse (a job id with a colon,
a label value over 63 characters), restartPolicy Always, Indexed without completions,
per-index and pod-failure-policy combinations. Each returns a `Cause` worded like the
API server's, so the 422 a test sees reads like the one a cluster would send.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .status import Cause

__all__ = ["validate_job", "validate_labels", "validate_name"]

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN_RE = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$")
_DNS_LABEL_RE = re.compile(rf"^{_DNS_LABEL}$")
_QUALIFIED_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_ENV_NAME_RE = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character"
)
_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
_RESTART_POLICIES = ("OnFailure", "Never")
_POLICY_ACTIONS = ("FailJob", "FailIndex", "Ignore", "Count")


def validate_name(name: str, field: str, max_len: int = 253) -> list[Cause]:
    if len(name) > max_len:
        return [
            Cause("FieldValueInvalid", field, f"must be no more than {max_len} characters", name)
        ]
    if not _DNS_SUBDOMAIN_RE.match(name):
        return [Cause("FieldValueInvalid", field, _SUBDOMAIN_MSG, name)]
    return []


def _qualified_key(key: str, field: str) -> list[Cause]:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN_RE.match(prefix)):
        return [Cause("FieldValueInvalid", field, "prefix part " + _SUBDOMAIN_MSG, key)]
    if len(name) > 63 or not _QUALIFIED_NAME_RE.match(name):
        detail = (
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character, and be no more than 63 characters"
        )
        return [Cause("FieldValueInvalid", field, detail, key)]
    return []


def validate_labels(labels: Any, field: str, *, values: bool = True) -> list[Cause]:
    """Keys are qualified names; label values (not annotation values) are 63-char tokens."""
    if not labels:
        return []
    causes = []
    for key, value in labels.items():
        causes += _qualified_key(key, field)
        if values and (len(str(value)) > 63 or not _LABEL_VALUE_RE.match(str(value))):
            detail = (
                "a valid label must be an empty string or consist of alphanumeric characters, "
                "'-', '_' or '.', and must start and end with an alphanumeric character, "
                "and be no more than 63 characters"
            )
            causes.append(Cause("FieldValueInvalid", field, detail, value))
    return causes


def _non_negative(spec: dict[str, Any], keys: Iterable[str]) -> list[Cause]:
    causes = []
    for key in keys:
        value = spec.get(key)
        if isinstance(value, int) and value < 0:
            detail = "must be greater than or equal to 0"
            causes.append(Cause("FieldValueInvalid", f"spec.{key}", detail, value))
    return causes


def validate_job(job: dict[str, Any]) -> list[Cause]:
    """All field errors of a Job manifest (empty when it would be admitted)."""
    meta = job.get("metadata") or {}
    causes: list[Cause] = []
    name = meta.get("name")
    if not name and not meta.get("generateName"):
        causes.append(
            Cause("FieldValueRequired", "metadata.name", "name or generateName is required")
        )
    elif name:
        causes += validate_name(name, "metadata.name", max_len=63)
    causes += validate_labels(meta.get("labels"), "metadata.labels")
    causes += validate_labels(meta.get("annotations"), "metadata.annotations", values=False)
    spec = job.get("spec") or {}
    template = spec.get("template")
    if not template:
        return [*causes, Cause("FieldValueRequired", "spec.template", "")]
    causes += validate_labels(
        (template.get("metadata") or {}).get("labels"), "spec.template.metadata.labels"
    )
    pod_spec = template.get("spec") or {}
    causes += _validate_containers(pod_spec.get("containers"))
    restart = pod_spec.get("restartPolicy", "Always")
    if restart not in _RESTART_POLICIES:
        causes.append(
            Cause(
                "FieldValueNotSupported",
                "spec.template.spec.restartPolicy",
                'supported values: "OnFailure", "Never"',
                restart,
            )
        )
    causes += _validate_job_spec(spec, restart)
    return causes


def _validate_job_spec(spec: dict[str, Any], restart: str) -> list[Cause]:
    causes = _non_negative(
        spec,
        (
            "parallelism",
            "completions",
            "backoffLimit",
            "backoffLimitPerIndex",
            "maxFailedIndexes",
            "ttlSecondsAfterFinished",
        ),
    )
    deadline = spec.get("activeDeadlineSeconds")
    if isinstance(deadline, int) and deadline <= 0:
        causes.append(
            Cause(
                "FieldValueInvalid",
                "spec.activeDeadlineSeconds",
                "must be greater than 0",
                deadline,
            )
        )
    mode = spec.get("completionMode", "NonIndexed")
    if mode not in ("NonIndexed", "Indexed"):
        causes.append(
            Cause(
                "FieldValueNotSupported",
                "spec.completionMode",
                'supported values: "NonIndexed", "Indexed"',
                mode,
            )
        )
    if mode == "Indexed" and spec.get("completions") is None:
        causes.append(
            Cause("FieldValueRequired", "spec.completions", "when completion mode is Indexed")
        )
    per_index = spec.get("backoffLimitPerIndex")
    if per_index is not None and mode != "Indexed":
        causes.append(
            Cause(
                "FieldValueForbidden",
                "spec.backoffLimitPerIndex",
                "requires indexed completion mode",
            )
        )
    max_failed = spec.get("maxFailedIndexes")
    if max_failed is not None and per_index is None:
        causes.append(
            Cause(
                "FieldValueRequired",
                "spec.backoffLimitPerIndex",
                "when maxFailedIndexes is specified",
            )
        )
    completions = spec.get("completions")
    if isinstance(max_failed, int) and isinstance(completions, int) and max_failed > completions:
        causes.append(
            Cause(
                "FieldValueInvalid",
                "spec.maxFailedIndexes",
                "must be less than or equal to completions",
                max_failed,
            )
        )
    if spec.get("selector") is not None and not spec.get("manualSelector"):
        causes.append(
            Cause(
                "FieldValueInvalid",
                "spec.selector",
                "`selector` not auto-generated",
                spec["selector"],
            )
        )
    replacement = spec.get("podReplacementPolicy")
    if replacement is not None and replacement not in ("TerminatingOrFailed", "Failed"):
        causes.append(
            Cause(
                "FieldValueNotSupported",
                "spec.podReplacementPolicy",
                'supported values: "TerminatingOrFailed", "Failed"',
                replacement,
            )
        )
    if spec.get("podFailurePolicy") is not None:
        causes += _validate_pod_failure_policy(spec, restart)
    return causes


def _validate_pod_failure_policy(spec: dict[str, Any], restart: str) -> list[Cause]:
    causes = []
    if restart != "Never":
        causes.append(
            Cause(
                "FieldValueNotSupported",
                "spec.template.spec.restartPolicy",
                'only "Never" is supported when podFailurePolicy is specified',
                restart,
            )
        )
    if spec.get("podReplacementPolicy", "Failed") != "Failed":
        causes.append(
            Cause(
                "FieldValueNotSupported",
                "spec.podReplacementPolicy",
                'supported values: "Failed" when podFailurePolicy is specified',
                spec["podReplacementPolicy"],
            )
        )
    for i, rule in enumerate(spec["podFailurePolicy"].get("rules") or []):
        path = f"spec.podFailurePolicy.rules[{i}]"
        action = rule.get("action")
        if action not in _POLICY_ACTIONS:
            causes.append(
                Cause(
                    "FieldValueNotSupported",
                    f"{path}.action",
                    'supported values: "Count", "FailIndex", "FailJob", "Ignore"',
                    action,
                )
            )
        if action == "FailIndex" and spec.get("backoffLimitPerIndex") is None:
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    f"{path}.action",
                    "requires the backoffLimitPerIndex to be set",
                    action,
                )
            )
        codes, conditions = rule.get("onExitCodes"), rule.get("onPodConditions")
        if (codes is None) == (conditions is None):
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    path,
                    "specifying one of onExitCodes and onPodConditions is required",
                    None,
                )
            )
        if codes is not None:
            causes += _validate_exit_codes(codes, f"{path}.onExitCodes")
    return causes


def _validate_exit_codes(codes: dict[str, Any], path: str) -> list[Cause]:
    causes = []
    operator = codes.get("operator")
    if operator not in ("In", "NotIn"):
        causes.append(
            Cause(
                "FieldValueNotSupported",
                f"{path}.operator",
                'supported values: "In", "NotIn"',
                operator,
            )
        )
    values = codes.get("values") or []
    if not values:
        causes.append(
            Cause("FieldValueInvalid", f"{path}.values", "at least one value is required", values)
        )
    if operator == "In" and 0 in values:
        causes.append(
            Cause("FieldValueInvalid", f"{path}.values", "must not be 0 for the In operator", 0)
        )
    return causes


def _validate_containers(containers: Any) -> list[Cause]:
    if not containers:
        return [Cause("FieldValueRequired", "spec.template.spec.containers", "")]
    causes: list[Cause] = []
    seen: set[str] = set()
    for i, container in enumerate(containers):
        path = f"spec.template.spec.containers[{i}]"
        name = container.get("name")
        if not name:
            causes.append(Cause("FieldValueRequired", f"{path}.name", ""))
        elif len(name) > 63 or not _DNS_LABEL_RE.match(name):
            causes.append(Cause("FieldValueInvalid", f"{path}.name", _LABEL_MSG, name))
        elif name in seen:
            causes.append(Cause("FieldValueDuplicate", f"{path}.name", "", name))
        seen.add(name or "")
        if not container.get("image"):
            causes.append(Cause("FieldValueRequired", f"{path}.image", ""))
        causes += _validate_env(container.get("env") or [], f"{path}.env")
        causes += _validate_env_from(container.get("envFrom") or [], f"{path}.envFrom")
    return causes


def _validate_env(env: list[dict[str, Any]], path: str) -> list[Cause]:
    causes = []
    for i, var in enumerate(env):
        name = var.get("name")
        if not name:
            causes.append(Cause("FieldValueRequired", f"{path}[{i}].name", ""))
        elif not _ENV_NAME_RE.match(name):
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    f"{path}[{i}].name",
                    "a valid environment variable name must consist of alphabetic "
                    "characters, digits, '_', '-', or '.', and must not start with "
                    "a digit",
                    name,
                )
            )
        source = var.get("valueFrom")
        if source is not None and var.get("value"):
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    f"{path}[{i}].valueFrom",
                    "may not be specified when `value` is not empty",
                    "",
                )
            )
        if source is not None and len([k for k, v in source.items() if v is not None]) != 1:
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    f"{path}[{i}].valueFrom",
                    "must specify exactly one of: `fieldRef`, `resourceFieldRef`, "
                    "`configMapKeyRef` or `secretKeyRef`",
                    "",
                )
            )
    return causes


def _validate_env_from(env_from: list[dict[str, Any]], path: str) -> list[Cause]:
    causes = []
    for i, source in enumerate(env_from):
        refs = [k for k in ("configMapRef", "secretRef") if source.get(k) is not None]
        if len(refs) != 1:
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    f"{path}[{i}]",
                    "must specify one of: `configMapRef` or `secretRef`",
                    "",
                )
            )
        elif not source[refs[0]].get("name"):
            causes.append(Cause("FieldValueRequired", f"{path}[{i}].{refs[0]}.name", ""))
    return causes
