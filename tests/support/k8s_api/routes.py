"""HTTP surface: the batch/v1 and core/v1 paths the `kubernetes` client calls.

Handlers translate between HTTP and `Cluster` calls and nothing else. Every request is
recorded (method, path, query, parsed body) before it is handled, so tests can check the
manifest a launcher really sent. Errors leave as Kubernetes `Status` bodies.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from . import discovery
from .cluster import Cluster
from .selectors import matches_fields, matches_labels, parse_field_selector, parse_label_selector
from .status import ApiError, bad_request
from .store import StoreEvent

__all__ = ["RecordedRequest", "RequestLog", "build_app"]

_BODY = web.RequestKey("parsed_body", object)
_LIST_KIND = {
    "jobs": ("batch/v1", "JobList"),
    "pods": ("v1", "PodList"),
    "secrets": ("v1", "SecretList"),
    "configmaps": ("v1", "ConfigMapList"),
}
_META_FIELDS: dict[str, Callable[[dict[str, Any]], str]] = {
    "metadata.name": lambda o: o["metadata"]["name"],
    "metadata.namespace": lambda o: o["metadata"]["namespace"],
}
_FIELDS: dict[str, dict[str, Callable[[dict[str, Any]], str]]] = {
    "jobs": {
        **_META_FIELDS,
        "status.successful": lambda o: str((o.get("status") or {}).get("succeeded", 0)),
    },
    "pods": {
        **_META_FIELDS,
        "spec.nodeName": lambda o: o["spec"].get("nodeName", ""),
        "spec.restartPolicy": lambda o: o["spec"].get("restartPolicy", ""),
        "spec.schedulerName": lambda o: o["spec"].get("schedulerName", ""),
        "spec.serviceAccountName": lambda o: o["spec"].get("serviceAccountName", ""),
        "status.phase": lambda o: o["status"].get("phase", ""),
        "status.podIP": lambda o: o["status"].get("podIP", ""),
        "status.nominatedNodeName": lambda o: o["status"].get("nominatedNodeName", ""),
    },
    "secrets": {**_META_FIELDS, "type": lambda o: o.get("type", "")},
    "configmaps": dict(_META_FIELDS),
}


@dataclass(frozen=True)
class RecordedRequest:
    """One request as received; `body` is the decoded JSON (None without a body)."""

    method: str
    path: str
    query: Mapping[str, str]
    content_type: str
    body: Any
    raw: bytes


class RequestLog:
    """Thread-safe: the server thread appends, the test thread reads snapshots."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[RecordedRequest] = []

    def append(self, item: RecordedRequest) -> None:
        with self._lock:
            self._items.append(item)

    def snapshot(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._items)


def _json(obj: Any, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    response = web.json_response(obj, status=status)
    for text in warnings or []:
        escaped = text.replace("\\", "\\\\").replace('"', '\\"')
        response.headers.add("Warning", f'299 - "{escaped}"')
    return response


def _body(request: web.Request) -> Any:
    return request[_BODY]


def build_app(cluster: Cluster, requests: RequestLog) -> web.Application:
    @web.middleware
    async def record_and_translate(request: web.Request, handler: Any) -> web.StreamResponse:
        raw = await request.read()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        request[_BODY] = body
        requests.append(
            RecordedRequest(
                request.method, request.path, dict(request.query), request.content_type, body, raw
            )
        )
        try:
            return await handler(request)
        except ApiError as exc:
            return _json(exc.to_status(), exc.code)
        except web.HTTPNotFound:
            return _json(
                ApiError(
                    404, "NotFound", "the server could not find the requested resource"
                ).to_status(),
                404,
            )
        except web.HTTPMethodNotAllowed:
            return _json(
                ApiError(
                    405,
                    "MethodNotAllowed",
                    "the server does not allow this method on the requested resource",
                ).to_status(),
                405,
            )

    app = web.Application(middlewares=[record_and_translate])
    h = _Handlers(cluster)
    static = {
        "/version": discovery.VERSION,
        "/api": discovery.API_VERSIONS,
        "/apis": discovery.API_GROUPS,
        "/api/v1": discovery.CORE_V1,
        "/apis/batch/v1": discovery.BATCH_V1,
        "/apis/batch": discovery.API_GROUPS["groups"][0] | {"kind": "APIGroup", "apiVersion": "v1"},
    }
    for path, doc in static.items():
        app.router.add_get(path, _static(doc))
        app.router.add_get(path + "/", _static(doc))  # VersionApi asks for /version/
    jobs = "/apis/batch/v1/namespaces/{ns}/jobs"
    app.router.add_get("/apis/batch/v1/jobs", h.list_all("jobs"))
    app.router.add_get(jobs, h.list_namespaced("jobs"))
    app.router.add_post(jobs, h.create_job)
    app.router.add_get(jobs + "/{name}", h.read("jobs"))
    app.router.add_get(jobs + "/{name}/status", h.read("jobs"))
    app.router.add_put(jobs + "/{name}", h.replace_job)
    app.router.add_patch(jobs + "/{name}", h.patch_job)
    app.router.add_delete(jobs + "/{name}", h.delete_job)
    pods = "/api/v1/namespaces/{ns}/pods"
    app.router.add_get("/api/v1/pods", h.list_all("pods"))
    app.router.add_get(pods, h.list_namespaced("pods"))
    app.router.add_get(pods + "/{name}", h.read("pods"))
    app.router.add_get(pods + "/{name}/log", h.pod_log)
    for resource in ("secrets", "configmaps"):
        base = "/api/v1/namespaces/{ns}/" + resource
        app.router.add_get(base, h.list_namespaced(resource))
        app.router.add_post(base, h.create_core(resource))
        app.router.add_get(base + "/{name}", h.read(resource))
        app.router.add_delete(base + "/{name}", h.delete_core(resource))
    return app


def _static(doc: dict[str, Any]) -> Any:
    async def handler(_request: web.Request) -> web.Response:
        return _json(doc)

    return handler


def _flag(value: str | None) -> bool:
    return value in ("true", "1", "True")


class _Handlers:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.store = cluster.store

    # ---- generic reads ----------------------------------------------------------------

    def read(self, resource: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            ns, name = request.match_info["ns"], request.match_info["name"]
            return _json(self.store.get(resource, ns, name))

        return handler

    def list_all(self, resource: str) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await self._list_or_watch(request, resource, None)

        return handler

    def list_namespaced(self, resource: str) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await self._list_or_watch(request, resource, request.match_info["ns"])

        return handler

    def _matcher(self, resource: str, ns: str | None, query: Mapping[str, str]) -> Any:
        labels = parse_label_selector(query.get("labelSelector"))
        fields = parse_field_selector(query.get("fieldSelector"), _FIELDS[resource])

        def matches(obj: dict[str, Any]) -> bool:
            return (
                ns in (None, obj["metadata"]["namespace"])
                and matches_labels(labels, obj["metadata"].get("labels"))
                and matches_fields(fields, obj, _FIELDS[resource])
            )

        return matches

    async def _list_or_watch(
        self, request: web.Request, resource: str, ns: str | None
    ) -> web.StreamResponse:
        matches = self._matcher(resource, ns, request.query)
        if _flag(request.query.get("watch")):
            return await self._watch(request, resource, matches)
        items = [o for o in self.store.list(resource, ns) if matches(o)]
        for item in items:
            item.pop("apiVersion", None)
            item.pop("kind", None)
        api_version, kind = _LIST_KIND[resource]
        meta: dict[str, Any] = {"resourceVersion": str(self.store.resource_version)}
        start = _decode_continue(request.query.get("continue"))
        limit = _int_param(request.query, "limit") or 0
        items = items[start:]
        if limit and len(items) > limit:
            items = items[:limit]
            meta["continue"] = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
        return _json({"apiVersion": api_version, "kind": kind, "metadata": meta, "items": items})

    async def _watch(
        self, request: web.Request, resource: str, matches: Callable[[dict[str, Any]], bool]
    ) -> web.StreamResponse:
        rv_text = request.query.get("resourceVersion") or "0"
        if not rv_text.isdigit():
            raise bad_request(f'invalid resource version "{rv_text}"')
        timeout = _int_param(request.query, "timeoutSeconds")
        # Subscribe and snapshot with no await in between: nothing can slip through.
        stream = self.cluster.open_watch()
        try:
            if rv_text == "0":
                backlog = [("ADDED", o) for o in self.store.list(resource) if matches(o)]
            else:
                backlog = [
                    t
                    for e in self.store.events_since(int(rv_text))
                    if (t := _translate(e, resource, matches))
                ]
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            with contextlib.suppress(TimeoutError, ConnectionResetError):
                async with asyncio.timeout(timeout):
                    for kind, obj in backlog:
                        await _send(response, kind, obj)
                    while (event := await stream.queue.get()) is not None:
                        if translated := _translate(event, resource, matches):
                            await _send(response, *translated)
            with contextlib.suppress(ConnectionResetError):
                await response.write_eof()
            return response
        finally:
            self.cluster.close_watch(stream)

    # ---- jobs -------------------------------------------------------------------------

    async def create_job(self, request: web.Request) -> web.Response:
        q = request.query
        job, warnings = self.cluster.create_job(
            request.match_info["ns"],
            _body(request),
            field_validation=q.get("fieldValidation"),
            dry_run=q.get("dryRun") == "All",
        )
        return _json(job, 201, warnings)

    async def replace_job(self, request: web.Request) -> web.Response:
        job, warnings = self.cluster.update_job(
            request.match_info["ns"],
            request.match_info["name"],
            _body(request),
            field_validation=request.query.get("fieldValidation"),
        )
        return _json(job, 200, warnings)

    async def patch_job(self, request: web.Request) -> web.Response:
        job, warnings = self.cluster.update_job(
            request.match_info["ns"],
            request.match_info["name"],
            _body(request),
            field_validation=request.query.get("fieldValidation"),
            patch_type=request.headers.get("Content-Type", ""),
        )
        return _json(job, 200, warnings)

    async def delete_job(self, request: web.Request) -> web.Response:
        options = _delete_options(request)
        result, warnings = self.cluster.delete_job(
            request.match_info["ns"], request.match_info["name"], options
        )
        return _json(result, 200, warnings)

    # ---- pods, secrets, config maps ---------------------------------------------------

    async def pod_log(self, request: web.Request) -> web.StreamResponse:
        ns, name, q = request.match_info["ns"], request.match_info["name"], request.query
        path = self.cluster.pod_log_path(ns, name, q.get("container"))
        if _flag(q.get("follow")):
            response = web.StreamResponse(headers={"Content-Type": "text/plain"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            with contextlib.suppress(ConnectionResetError):
                async for chunk in self.cluster.follow_log(ns, name, path):
                    await response.write(chunk)
                await response.write_eof()
            return response
        data = path.read_bytes() if path.exists() else b""
        if (tail := _int_param(q, "tailLines")) is not None:
            data = b"".join(data.splitlines(keepends=True)[-tail:]) if tail else b""
        if (limit := _int_param(q, "limitBytes")) is not None:
            data = data[:limit]
        return web.Response(body=data, content_type="text/plain")

    def create_core(self, resource: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            obj = self.cluster.create_core(
                resource,
                request.match_info["ns"],
                _body(request),
                field_validation=request.query.get("fieldValidation"),
            )
            return _json(obj, 201)

        return handler

    def delete_core(self, resource: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            obj = self.store.delete(resource, request.match_info["ns"], request.match_info["name"])
            return _json(obj)

        return handler


def _delete_options(request: web.Request) -> dict[str, Any]:
    q = request.query
    options: dict[str, Any] = {}
    if "propagationPolicy" in q:
        options["propagationPolicy"] = q["propagationPolicy"]
    if "gracePeriodSeconds" in q:
        options["gracePeriodSeconds"] = _int_param(q, "gracePeriodSeconds")
    if "orphanDependents" in q:
        options["orphanDependents"] = _flag(q["orphanDependents"])
    if "dryRun" in q:
        options["dryRun"] = [q["dryRun"]]
    body = _body(request)
    if isinstance(body, dict):
        options.update({k: v for k, v in body.items() if v is not None})
    return options


def _int_param(query: Mapping[str, str], key: str) -> int | None:
    """A non-negative integer query parameter, or None when absent."""
    text = query.get(key)
    if text is None or text == "":
        return None
    if not text.isdigit():
        raise bad_request(f'invalid value for {key}: "{text}" is not a non-negative integer')
    return int(text)


def _decode_continue(token: str | None) -> int:
    if not token:
        return 0
    try:
        return int(base64.urlsafe_b64decode(token.encode()).decode())
    except ValueError as exc:
        raise ApiError(
            410,
            "Expired",
            "The provided continue parameter is too old to display a consistent list result.",
        ) from exc


def _translate(
    event: StoreEvent, resource: str, matches: Callable[[dict[str, Any]], bool]
) -> tuple[str, dict[str, Any]] | None:
    """A store event as the watcher sees it: entering the selection is ADDED, leaving it
    DELETED, as the API server's watch cache filters."""
    if event.resource != resource:
        return None
    if event.type == "DELETED":
        return ("DELETED", event.obj) if matches(event.obj) else None
    now_in = matches(event.obj)
    was_in = event.old is not None and matches(event.old)
    if now_in:
        return ("MODIFIED" if was_in else "ADDED", event.obj)
    return ("DELETED", event.obj) if was_in else None


async def _send(response: web.StreamResponse, kind: str, obj: dict[str, Any]) -> None:
    await response.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
