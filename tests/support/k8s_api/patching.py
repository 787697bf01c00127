"""PATCH bodies: JSON merge patch, a strategic merge patch subset, and JSON patch.

Strategic merge patch is approximated: maps merge as in a JSON merge patch, and lists of
objects that all carry `name` (containers, env, volumes: the `name` merge keys of the
types a Job holds) merge by that key; other lists are replaced. `$patch` directives are not
supported. That covers what a launcher patches (suspend, parallelism, labels).
"""

from __future__ import annotations

import copy
from typing import Any

from .status import bad_request, unsupported_media_type

__all__ = ["apply_patch"]

_MERGE = "application/merge-patch+json"
_STRATEGIC = "application/strategic-merge-patch+json"
_JSON_PATCH = "application/json-patch+json"


def apply_patch(target: dict[str, Any], patch: Any, content_type: str) -> dict[str, Any]:
    kind = content_type.split(";")[0].strip()
    if kind == _JSON_PATCH:
        if not isinstance(patch, list):
            raise bad_request("json patch must be a list of operations")
        return _json_patch(copy.deepcopy(target), patch)
    if kind in (_MERGE, _STRATEGIC):
        if not isinstance(patch, dict):
            raise bad_request("merge patch must be a JSON object")
        return _merge(copy.deepcopy(target), patch, by_name=kind == _STRATEGIC)
    raise unsupported_media_type(content_type)


def _merge(target: Any, patch: Any, *, by_name: bool) -> Any:
    if isinstance(patch, dict):
        out = target if isinstance(target, dict) else {}
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = _merge(out.get(key), value, by_name=by_name)
        return out
    if by_name and _named(patch) and _named(target):
        merged = {item["name"]: item for item in target}
        for item in patch:
            merged[item["name"]] = _merge(merged.get(item["name"]), item, by_name=True)
        return list(merged.values())
    return copy.deepcopy(patch)


def _named(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, dict) and "name" in v for v in value)


def _pointer(path: str) -> list[str]:
    if path and not path.startswith("/"):
        raise bad_request(f'json patch path "{path}" must start with "/"')
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def _parent(doc: Any, parts: list[str], path: str) -> Any:
    node = doc
    for part in parts[:-1]:
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError) as exc:
            raise bad_request(f'json patch path "{path}" does not exist') from exc
    return node


def _json_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    for op in ops:
        path = op.get("path", "")
        parts = _pointer(path)
        if not parts:
            raise bad_request("json patch on the whole document is not supported")
        parent, last = _parent(doc, parts, path), parts[-1]
        kind = op.get("op")
        try:
            if kind in ("add", "replace"):
                if isinstance(parent, list):
                    index = len(parent) if last == "-" else int(last)
                    if kind == "add":
                        parent.insert(index, op["value"])
                    else:
                        parent[index] = op["value"]
                else:
                    if kind == "replace" and last not in parent:
                        raise bad_request(f'json patch replace: "{path}" does not exist')
                    parent[last] = op["value"]
            elif kind == "remove":
                del parent[int(last) if isinstance(parent, list) else last]
            elif kind == "test":
                current = parent[int(last)] if isinstance(parent, list) else parent.get(last)
                if current != op.get("value"):
                    raise bad_request(f'json patch test failed at "{path}"')
            else:
                raise bad_request(f'json patch operation "{kind}" is not supported')
        except (KeyError, IndexError, ValueError) as exc:
            raise bad_request(f'json patch path "{path}" does not exist') from exc
    return doc
