"""Kubernetes `Status` objects and the error that carries one.

Handlers raise `ApiError`; the HTTP layer turns it into the JSON body a real API server
sends, so the `kubernetes` client raises `ApiException` with the same status, reason and
message a cluster would produce. Field-level problems are `Cause`s, rendered the way the
API server renders `field.ErrorList` (``Job.batch "x" is invalid: spec.foo: Required value``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ApiError",
    "Cause",
    "already_exists",
    "bad_request",
    "conflict",
    "invalid",
    "not_found",
    "success_status",
    "unsupported_media_type",
]

_GROUP_KIND = {
    "jobs": ("batch", "Job"),
    "pods": ("", "Pod"),
    "secrets": ("", "Secret"),
    "configmaps": ("", "ConfigMap"),
}


@dataclass(frozen=True)
class Cause:
    """One field error: `reason` is a Kubernetes cause type such as ``FieldValueRequired``."""

    reason: str
    field: str
    detail: str = ""
    value: Any = None

    @property
    def message(self) -> str:
        """The text the API server prints after the field path."""
        match self.reason:
            case "FieldValueRequired":
                text = "Required value"
            case "FieldValueNotSupported":
                text = f"Unsupported value: {json.dumps(self.value)}"
            case "FieldValueDuplicate":
                text = f"Duplicate value: {json.dumps(self.value)}"
            case "FieldValueForbidden":
                text = "Forbidden"
            case _:
                text = f"Invalid value: {json.dumps(self.value)}"
        return f"{text}: {self.detail}" if self.detail else text

    def to_dict(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "field": self.field}


@dataclass
class ApiError(Exception):
    """An API failure with its HTTP code; `reason` is the Kubernetes StatusReason."""

    code: int
    reason: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"

    def to_status(self) -> dict[str, Any]:
        """The `Status` object (kind Status, apiVersion v1) a real server returns."""
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            status["details"] = self.details
        return status


def _details(resource: str, name: str) -> dict[str, Any]:
    group, _kind = _GROUP_KIND.get(resource, ("", resource))
    details: dict[str, Any] = {"name": name, "kind": resource}
    if group:
        details["group"] = group
    return details


def _qualified(resource: str) -> str:
    group, _kind = _GROUP_KIND.get(resource, ("", resource))
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, name: str) -> ApiError:
    return ApiError(
        404, "NotFound", f'{_qualified(resource)} "{name}" not found', _details(resource, name)
    )


def already_exists(resource: str, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{_qualified(resource)} "{name}" already exists',
        _details(resource, name),
    )


def conflict(resource: str, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(resource)} "{name}": {why}',
        _details(resource, name),
    )


def invalid(resource: str, name: str, causes: list[Cause]) -> ApiError:
    """422 Invalid, worded like `apierrors.NewInvalid` (one cause bare, several bracketed)."""
    group, kind = _GROUP_KIND.get(resource, ("", resource))
    qualified_kind = f"{kind}.{group}" if group else kind
    rendered = [f"{c.field}: {c.message}" for c in causes]
    joined = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
    details = {"name": name, "kind": kind, "causes": [c.to_dict() for c in causes]}
    if group:
        details["group"] = group
    return ApiError(422, "Invalid", f'{qualified_kind} "{name}" is invalid: {joined}', details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format: accepted media types include: "
        f"application/json-patch+json, application/merge-patch+json, "
        f'application/strategic-merge-patch+json (got "{content_type}")',
    )


def success_status(resource: str, name: str, uid: str) -> dict[str, Any]:
    """The `Status` a DELETE answers with once the object is gone."""
    details = _details(resource, name)
    details["uid"] = uid
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }
