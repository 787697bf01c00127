"""Unknown-field and type checks against the `kubernetes` client's own model tables.

The client's generated models carry the OpenAPI field tables (`openapi_types`,
`attribute_map`) of Kubernetes 1.37, so walking a manifest against them finds a misspelt
field (``backoffLimitPerIndx``) or a string where an integer belongs, as the API server's
decoder would. Unknown fields are reported, and the caller decides (per the request's
`fieldValidation`) whether they are an error, a warning, or ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from kubernetes import client

__all__ = ["SchemaReport", "check_manifest"]

_LIST_RE = re.compile(r"^List\[(.+)\]$")
_DICT_RE = re.compile(r"^Dict\[str, (.+)\]$")
_SCALARS: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "bytes": (str,),
    "datetime": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
}


@dataclass
class SchemaReport:
    unknown: list[str] = field(default_factory=list)
    type_errors: list[str] = field(default_factory=list)


@cache
def _fields(model: str) -> dict[str, str] | None:
    """JSON key -> type string for a model, or None if the client has no such model."""
    cls = getattr(client.models, model, None)
    if cls is None or not hasattr(cls, "openapi_types"):
        return None
    return {cls.attribute_map[attr]: kind for attr, kind in cls.openapi_types.items()}


def check_manifest(obj: Any, model: str = "V1Job", *, strip: bool = False) -> SchemaReport:
    """Walk `obj` as an instance of `model` (a client model name such as ``V1Job``);
    with `strip`, unknown fields are also removed from `obj` in place (the server drops
    them unless fieldValidation is Strict)."""
    report = SchemaReport()
    _walk(obj, model, "", report, strip)
    return report


def _walk(value: Any, kind: str, path: str, report: SchemaReport, strip: bool) -> None:
    if value is None or kind == "object":
        return
    if m := _LIST_RE.match(kind):
        if not isinstance(value, list):
            report.type_errors.append(f"{path or '<root>'}: expected an array")
            return
        for i, item in enumerate(value):
            _walk(item, m.group(1), f"{path}[{i}]", report, strip)
        return
    if m := _DICT_RE.match(kind):
        if not isinstance(value, dict):
            report.type_errors.append(f"{path or '<root>'}: expected an object")
            return
        for key, item in value.items():
            _walk(item, m.group(1), f"{path}[{key}]", report, strip)
        return
    if kind in _SCALARS:
        expected = _SCALARS[kind]
        wrong_bool = isinstance(value, bool) and bool not in expected
        if wrong_bool or not isinstance(value, expected):
            report.type_errors.append(f"{path}: expected {kind}, got {type(value).__name__}")
        return
    fields = _fields(kind)
    if fields is None:
        return  # a type the client models loosely; accept as the server would
    if not isinstance(value, dict):
        report.type_errors.append(f"{path or '<root>'}: expected an object")
        return
    for key, item in list(value.items()):
        child = f"{path}.{key}" if path else key
        if key not in fields:
            report.unknown.append(child)
            if strip:
                del value[key]
            continue
        _walk(item, fields[key], child, report, strip)
