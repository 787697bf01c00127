"""Static discovery documents: /version, /api, /apis and the two group versions we serve."""

from __future__ import annotations

from typing import Any

__all__ = ["API_GROUPS", "API_VERSIONS", "BATCH_V1", "CORE_V1", "VERSION"]

VERSION: dict[str, Any] = {
    "major": "1",
    "minor": "37",
    "gitVersion": "v1.37.0-modelops-test",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.25",
    "compiler": "gc",
    "platform": "linux/amd64",
}

_ADDRESS = [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]

API_VERSIONS: dict[str, Any] = {
    "kind": "APIVersions",
    "versions": ["v1"],
    "serverAddressByClientCIDRs": _ADDRESS,
}

API_GROUPS: dict[str, Any] = {
    "kind": "APIGroupList",
    "apiVersion": "v1",
    "groups": [
        {
            "name": "batch",
            "versions": [{"groupVersion": "batch/v1", "version": "v1"}],
            "preferredVersion": {"groupVersion": "batch/v1", "version": "v1"},
        }
    ],
}


def _resource(
    name: str, kind: str, verbs: list[str], short: list[str] | None = None, namespaced: bool = True
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name,
        "singularName": "" if "/" in name else kind.lower(),
        "namespaced": namespaced,
        "kind": kind,
        "verbs": verbs,
    }
    if short:
        entry["shortNames"] = short
    return entry


_CRUD = ["create", "delete", "get", "list", "patch", "update", "watch"]

BATCH_V1: dict[str, Any] = {
    "kind": "APIResourceList",
    "apiVersion": "v1",
    "groupVersion": "batch/v1",
    "resources": [
        _resource("jobs", "Job", _CRUD),
        _resource("jobs/status", "Job", ["get"]),
    ],
}

CORE_V1: dict[str, Any] = {
    "kind": "APIResourceList",
    "groupVersion": "v1",
    "resources": [
        _resource("pods", "Pod", ["get", "list", "watch"], ["po"]),
        _resource("pods/log", "Pod", ["get"]),
        _resource("secrets", "Secret", ["create", "delete", "get", "list"]),
        _resource("configmaps", "ConfigMap", ["create", "delete", "get", "list"], ["cm"]),
    ],
}
