"""From a request body to the object the server stores, or the error it answers.

The order is the API server's: decode (types, unknown fields per `fieldValidation`),
validate (422 with every cause), default, and for updates check the resourceVersion
precondition and the fields a Job may not change.
"""

from __future__ import annotations

import base64
import binascii
import copy
from datetime import datetime
from typing import Any

from .defaults import default_job
from .meta import format_time, name_suffix, new_uid, parse_time
from .schema import check_manifest
from .status import Cause, bad_request, conflict, invalid
from .validation import validate_job, validate_name

__all__ = ["admit_core_object", "admit_job"]

_CORE_KINDS = {"secrets": ("Secret", "V1Secret"), "configmaps": ("ConfigMap", "V1ConfigMap")}
_IMMUTABLE = (
    "completionMode",
    "selector",
    "template",
    "backoffLimitPerIndex",
    "podFailurePolicy",
    "successPolicy",
    "managedBy",
    "manualSelector",
)


def _decode(
    body: Any, namespace: str, kind: str, model: str, field_validation: str | None
) -> tuple[dict[str, Any], list[str]]:
    """Type-check and strip unknown fields; returns the body copy and warning texts."""
    if not isinstance(body, dict):
        raise bad_request(f"the body of the request must be a {kind} object")
    body = copy.deepcopy(body)
    if body.get("kind") not in (None, kind):
        raise bad_request(
            f'{kind} in version "v1" cannot be handled as a {kind}: '
            f"unexpected kind {body['kind']!r}"
        )
    meta = body.get("metadata") or {}
    body["metadata"] = meta
    if meta.get("namespace") not in (None, "", namespace):
        raise bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    if field_validation not in (None, "", "Strict", "Warn", "Ignore"):
        raise bad_request(
            f'fieldValidation parameter unsupported: "{field_validation}"; '
            "use Strict, Warn or Ignore"
        )
    strict = field_validation == "Strict"
    report = check_manifest(body, model, strip=not strict)
    if report.type_errors:
        raise bad_request(
            f'{kind} in version "v1" cannot be handled as a {kind}: '
            + "; ".join(report.type_errors)
        )
    warnings = [f'unknown field "{path}"' for path in report.unknown]
    if warnings and strict:
        raise bad_request("strict decoding error: " + ", ".join(warnings))
    return body, ([] if field_validation == "Ignore" else warnings)


def admit_job(
    namespace: str,
    body: Any,
    *,
    now: datetime,
    field_validation: str | None = None,
    current: dict[str, Any] | None = None,
    url_name: str | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """A new Job (`current` None) or a replacement for `current`, defaulted and checked."""
    job, warnings = _decode(body, namespace, "Job", "V1Job", field_validation)
    job.pop("status", None)
    meta = job["metadata"]
    if url_name is not None and meta.get("name") not in (None, url_name):
        raise bad_request(
            f"the name of the object ({meta['name']}) does not match the name "
            f"on the URL ({url_name})"
        )
    causes = validate_job(job)
    if current is not None:
        same_selector = (job.get("spec") or {}).get("selector") == current["spec"].get("selector")
        causes = [c for c in causes if not (c.field == "spec.selector" and same_selector)]
    name = meta.get("name") or url_name or meta.get("generateName", "")
    if causes:
        raise invalid("jobs", name, causes)
    if current is None:
        if not meta.get("name"):
            name = meta["generateName"] + name_suffix()
        return default_job(job, namespace=namespace, name=name, uid=new_uid(), now=now), warnings
    return _admit_update(job, current, namespace), warnings


def _admit_update(job: dict[str, Any], current: dict[str, Any], namespace: str) -> dict[str, Any]:
    cur_meta = current["metadata"]
    name = cur_meta["name"]
    rv = job["metadata"].get("resourceVersion")
    if rv not in (None, "", cur_meta["resourceVersion"]):
        raise conflict(
            "jobs",
            name,
            "the object has been modified; please apply your changes "
            "to the latest version and try again",
        )
    created = parse_time(cur_meta["creationTimestamp"])
    out = default_job(job, namespace=namespace, name=name, uid=cur_meta["uid"], now=created)
    causes = _immutable_changes(current["spec"], out["spec"])
    if causes:
        raise invalid("jobs", name, causes)
    changed = out["spec"] != current["spec"]
    out["metadata"]["generation"] = cur_meta.get("generation", 1) + (1 if changed else 0)
    for key in ("deletionTimestamp", "deletionGracePeriodSeconds", "finalizers"):
        if key in cur_meta:
            out["metadata"][key] = cur_meta[key]
    out["status"] = copy.deepcopy(current.get("status") or {})
    return out


def _immutable_changes(old: dict[str, Any], new: dict[str, Any]) -> list[Cause]:
    causes = [
        Cause("FieldValueInvalid", f"spec.{key}", "field is immutable", new.get(key))
        for key in _IMMUTABLE
        if old.get(key) != new.get(key)
    ]
    elastic = new.get("completionMode") == "Indexed" and new.get("completions") == new.get(
        "parallelism"
    )
    if old.get("completions") != new.get("completions") and not elastic:
        causes.append(
            Cause(
                "FieldValueInvalid",
                "spec.completions",
                "field is immutable",
                new.get("completions"),
            )
        )
    return causes


def admit_core_object(
    resource: str,
    namespace: str,
    body: Any,
    *,
    now: datetime,
    field_validation: str | None = None,
) -> dict[str, Any]:
    """A Secret or ConfigMap as stored: Secret `stringData` folded into base64 `data`."""
    kind, model = _CORE_KINDS[resource]
    obj, _warnings = _decode(body, namespace, kind, model, field_validation)
    meta = obj["metadata"]
    name = meta.get("name")
    if not name:
        raise invalid(
            resource,
            "",
            [Cause("FieldValueRequired", "metadata.name", "name or generateName is required")],
        )
    causes = validate_name(name, "metadata.name")
    if causes:
        raise invalid(resource, name, causes)
    if kind == "Secret":
        for key, value in (obj.get("data") or {}).items():
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, TypeError) as exc:
                raise bad_request(
                    f'Secret in version "v1" cannot be handled as a Secret: '
                    f"illegal base64 data in data[{key}]"
                ) from exc
        data = dict(obj.get("data") or {})
        for key, value in (obj.pop("stringData", None) or {}).items():
            data[key] = base64.b64encode(value.encode()).decode()
        obj["data"] = data
        obj.setdefault("type", "Opaque")
    obj.update(apiVersion="v1", kind=kind)
    meta.update(namespace=namespace, uid=new_uid(), creationTimestamp=format_time(now))
    return obj
