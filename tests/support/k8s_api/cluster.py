"""The cluster behind the API: object store, job controller loop, garbage collection.

Everything here runs on the server's event loop thread, so state needs no locks. Jobs are
reconciled by `controller.reconcile` whenever something they own changes (a "kick");
the cluster only carries out its decisions: create pod objects, start and kill process
groups, write status, delete per propagation policy.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from . import pods as podlib
from .admission import admit_core_object, admit_job
from .controller import reconcile
from .kubelet import Kubelet, KubeletConfig
from .meta import format_time
from .patching import apply_patch
from .status import ApiError, bad_request, conflict, success_status
from .store import ObjectStore, StoreEvent

__all__ = ["Cluster", "WatchStream"]

log = structlog.get_logger(__name__)

_ORPHAN_WARNING = (
    "child pods are preserved by default when jobs are deleted; set propagationPolicy=Background "
    "to remove them or set propagationPolicy=Orphan to suppress this warning"
)
_LOG_POLL = 0.05

Key = tuple[str, str]


class WatchStream:
    """Events for one watch request; `None` from `get` means the server is closing."""

    def __init__(self, unsubscribe: Callable[[], None]) -> None:
        self.queue: asyncio.Queue[StoreEvent | None] = asyncio.Queue()
        self._unsubscribe = unsubscribe

    def close(self) -> None:
        self._unsubscribe()


def _now() -> datetime:
    return datetime.now(UTC)


class Cluster:
    def __init__(self, config: KubeletConfig) -> None:
        self.config = config
        self.store = ObjectStore()
        self.errors: list[BaseException] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reconcilers: dict[Key, asyncio.Task[None]] = {}
        self._dirty: set[Key] = set()
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._watches: set[WatchStream] = set()
        self._waiters: list[asyncio.Future[None]] = []
        self._closing = False
        self.store.subscribe(self._wake_waiters)
        self.kubelet = Kubelet(self.store, config, self._spawn, self._kick_owner)

    # ---- jobs -------------------------------------------------------------------------

    def create_job(
        self, namespace: str, body: Any, *, field_validation: str | None, dry_run: bool
    ) -> tuple[dict[str, Any], list[str]]:
        job, warnings = admit_job(namespace, body, now=_now(), field_validation=field_validation)
        if dry_run:
            return job, warnings
        stored = self.store.create("jobs", job)
        log.info("k8s_test.job.created", namespace=namespace, job=job["metadata"]["name"])
        self._kick((namespace, job["metadata"]["name"]))
        return stored, warnings

    def update_job(
        self,
        namespace: str,
        name: str,
        body: Any,
        *,
        field_validation: str | None,
        patch_type: str | None = None,
    ) -> tuple[dict[str, Any], list[str]]:
        """PUT (`patch_type` None) or PATCH of a Job; status is owned by the controller."""
        current = self.store.get("jobs", namespace, name)
        if patch_type is not None:
            body = apply_patch(current, body, patch_type)
        job, warnings = admit_job(
            namespace,
            body,
            now=_now(),
            field_validation=field_validation,
            current=current,
            url_name=name,
        )
        stored = self.store.update("jobs", job)
        self._kick((namespace, name))
        return stored, warnings

    def delete_job(
        self, namespace: str, name: str, options: Mapping[str, Any]
    ) -> tuple[dict[str, Any], list[str]]:
        """Delete per propagation policy. Like the API server, the answer is a Status when
        the Job is gone at once (Background) and the Job itself while finalizers hold it
        (Foreground, Orphan; the default for batch/v1 is Orphan, with a warning)."""
        job = self.store.get("jobs", namespace, name)
        meta = job["metadata"]
        _check_preconditions(job, options.get("preconditions") or {})
        policy, warnings = _propagation(options)
        if options.get("dryRun"):
            return success_status("jobs", name, meta["uid"]), warnings
        owned = self._owned_pods(namespace, meta["uid"])
        grace = self._grace(job, options.get("gracePeriodSeconds"))
        log.info(
            "k8s_test.job.delete", namespace=namespace, job=name, policy=policy, pods=len(owned)
        )
        if policy == "Background":
            self.store.delete("jobs", namespace, name)
            for pod in owned:
                self.kubelet.terminate(
                    (namespace, pod["metadata"]["name"]), evict=True, grace=grace
                )
            return success_status("jobs", name, meta["uid"]), warnings
        if meta.get("deletionTimestamp") is None:
            meta["deletionTimestamp"] = format_time(_now())
            meta["deletionGracePeriodSeconds"] = 0
            meta["finalizers"] = [
                *meta.get("finalizers", []),
                "orphan" if policy == "Orphan" else "foregroundDeletion",
            ]
            job = self.store.update("jobs", job)
        if policy == "Orphan":
            for pod in owned:
                pod["metadata"].pop("ownerReferences", None)
                self.store.update("pods", pod)
            self.store.delete("jobs", namespace, name)
            return job, warnings
        for pod in owned:
            self.kubelet.terminate((namespace, pod["metadata"]["name"]), evict=True, grace=grace)
        self._spawn(self._finish_foreground(namespace, name, meta["uid"]))
        return job, warnings

    async def _finish_foreground(self, namespace: str, name: str, uid: str) -> None:
        await self._until(lambda: not self._owned_pods(namespace, uid))
        with contextlib.suppress(ApiError):
            self.store.delete("jobs", namespace, name)

    # ---- secrets and config maps ------------------------------------------------------

    def create_core(
        self, resource: str, namespace: str, body: Any, *, field_validation: str | None = None
    ) -> dict[str, Any]:
        obj = admit_core_object(
            resource, namespace, body, now=_now(), field_validation=field_validation
        )
        return self.store.create(resource, obj)

    def put_core(self, resource: str, namespace: str, body: dict[str, Any]) -> None:
        """Create or replace (used by the test-side `add_secret`/`add_config_map`)."""
        obj = admit_core_object(resource, namespace, body, now=_now())
        if self.store.find(resource, namespace, obj["metadata"]["name"]) is None:
            self.store.create(resource, obj)
        else:
            self.store.update(resource, obj)

    # ---- pod logs ---------------------------------------------------------------------

    def pod_log_path(self, namespace: str, name: str, container: str | None) -> Path:
        """The log file of a pod's container, after the checks the kubelet makes."""
        pod = self.store.get("pods", namespace, name)
        names = [c["name"] for c in pod["spec"]["containers"]]
        if container is None and len(names) > 1:
            raise bad_request(
                f"a container name must be specified for pod {name}, "
                f"choose one of: [{' '.join(names)}]"
            )
        container = container or names[0]
        if container not in names:
            raise bad_request(f"container {container} is not valid for pod {name}")
        state = (pod["status"].get("containerStatuses") or [{}])[0].get("state") or {}
        if pod["status"].get("phase") == "Pending" or "waiting" in state:
            reason = (state.get("waiting") or {}).get("reason", "ContainerCreating")
            raise bad_request(
                f'container "{container}" in pod "{name}" is waiting to start: {reason}'
            )
        return self.kubelet.log_path(namespace, name, container)

    async def follow_log(self, namespace: str, name: str, path: Path) -> AsyncIterator[bytes]:
        """Yield the log as it grows until the pod has finished and the file is drained."""
        offset = 0
        while True:
            pod = self.store.find("pods", namespace, name)
            finished = pod is None or pod["status"].get("phase") in ("Succeeded", "Failed")
            chunk = _read_from(path, offset)
            offset += len(chunk)
            if chunk:
                yield chunk
            elif finished or self._closing:
                return
            else:
                await asyncio.sleep(_LOG_POLL)

    # ---- watches ----------------------------------------------------------------------

    def open_watch(self) -> WatchStream:
        stream: WatchStream

        def deliver(event: StoreEvent) -> None:
            stream.queue.put_nowait(event)

        stream = WatchStream(self.store.subscribe(deliver))
        self._watches.add(stream)
        if self._closing:
            stream.queue.put_nowait(None)
        return stream

    def close_watch(self, stream: WatchStream) -> None:
        stream.close()
        self._watches.discard(stream)

    # ---- controller loop --------------------------------------------------------------

    def _kick(self, key: Key) -> None:
        if self._closing:
            return
        task = self._reconcilers.get(key)
        if task is not None and not task.done():
            self._dirty.add(key)
            return
        self._reconcilers[key] = self._spawn(self._reconcile_loop(key))

    async def _reconcile_loop(self, key: Key) -> None:
        while not self._closing:
            self._dirty.discard(key)
            await self._reconcile_once(key)
            if key not in self._dirty:
                return

    async def _reconcile_once(self, key: Key) -> None:
        namespace, name = key
        job = self.store.find("jobs", namespace, name)
        if job is None or job["metadata"].get("deletionTimestamp"):
            return
        owned = self._owned_pods(namespace, job["metadata"]["uid"])
        decision = reconcile(job, owned, _now())
        if decision.status != job.get("status"):
            job["status"] = decision.status
            self.store.update("jobs", job)
        grace = self._grace(job, None)
        for pod_name in decision.terminate:
            self.kubelet.terminate((namespace, pod_name), evict=False, grace=grace)
        for pod_name in decision.evict:
            self.kubelet.terminate((namespace, pod_name), evict=True, grace=grace)
        self._schedule_wake(key, decision.wake_at)
        for index in decision.start:
            # Starting a process yields to the loop: the Job may be deleted meanwhile, and
            # a pod created after its deletion would never be cleaned up.
            if not self._is_live(job):
                return
            await self._start_pod(job, index)
        if decision.start:
            self._dirty.add(key)

    def _is_live(self, job: dict[str, Any]) -> bool:
        meta = job["metadata"]
        current = self.store.find("jobs", meta["namespace"], meta["name"])
        return (
            current is not None
            and current["metadata"]["uid"] == meta["uid"]
            and not current["metadata"].get("deletionTimestamp")
            and not self._closing
        )

    def _schedule_wake(self, key: Key, at: datetime | None) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if at is not None:
            delay = max(0.0, (at - _now()).total_seconds())
            self._timers[key] = asyncio.get_running_loop().call_later(delay, self._kick, key)

    def _owned_pods(self, namespace: str, uid: str) -> list[dict[str, Any]]:
        return [
            p
            for p in self.store.list("pods", namespace)
            if any(ref.get("uid") == uid for ref in p["metadata"].get("ownerReferences") or [])
        ]

    def _grace(self, job: dict[str, Any], requested: int | None) -> float:
        spec_grace = job["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
        grace = spec_grace if requested is None else requested
        return min(float(grace), self.config.max_grace_seconds)

    async def _start_pod(self, job: dict[str, Any], index: int | None) -> None:
        pod = self.store.create("pods", podlib.new_pod(job, index, _now()))
        await self.kubelet.run(pod)

    def _kick_owner(self, pod: dict[str, Any]) -> None:
        for ref in pod["metadata"].get("ownerReferences") or []:
            if ref.get("kind") == "Job":
                self._kick((pod["metadata"]["namespace"], ref["name"]))

    # ---- plumbing ---------------------------------------------------------------------

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            assert exc is not None
            self.errors.append(exc)
            log.error("k8s_test.internal_error", error=repr(exc), exc_info=exc)

    def _wake_waiters(self, _event: StoreEvent) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _until(self, predicate: Callable[[], bool]) -> None:
        """Wait until `predicate` holds, re-checking after every store write."""
        while not predicate():
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    async def shutdown(self) -> None:
        """Kill every process group, wait for them, end watches and background tasks."""
        self._closing = True
        for timer in self._timers.values():
            timer.cancel()
        reconcilers = [t for t in self._reconcilers.values() if not t.done()]
        await asyncio.gather(*reconcilers, return_exceptions=True)
        await self.kubelet.shutdown()
        for stream in list(self._watches):
            stream.queue.put_nowait(None)
        pending = [t for t in self._tasks if not t.done()]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), timeout=5)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with open(path, "rb") as src:
            src.seek(offset)
            return src.read()
    except FileNotFoundError:
        return b""


def _propagation(options: Mapping[str, Any]) -> tuple[str, list[str]]:
    policy = options.get("propagationPolicy")
    orphan = options.get("orphanDependents")
    if policy is not None and orphan is not None:
        raise ApiError(
            422,
            "Invalid",
            'DeleteOptions.meta.k8s.io "" is invalid: '
            'propagationPolicy: Invalid value: "' + str(policy) + '": orphanDependents '
            "and deletionPropagation cannot be both set",
        )
    if policy is None and orphan is not None:
        policy = "Orphan" if orphan else "Background"
    if policy is None:
        return "Orphan", [_ORPHAN_WARNING]
    if policy not in ("Orphan", "Background", "Foreground"):
        raise ApiError(
            422,
            "Invalid",
            f'DeleteOptions.meta.k8s.io "" is invalid: '
            f'propagationPolicy: Unsupported value: "{policy}": supported values: '
            f'"Foreground", "Background", "Orphan", "nil"',
        )
    return policy, []


def _check_preconditions(obj: dict[str, Any], preconditions: Mapping[str, Any]) -> None:
    meta = obj["metadata"]
    for key in ("uid", "resourceVersion"):
        wanted = preconditions.get(key)
        if wanted is not None and wanted != meta.get(key):
            label = "UID" if key == "uid" else "ResourceVersion"
            raise conflict(
                "jobs",
                meta["name"],
                f"Precondition failed: {label} in precondition: {wanted}, "
                f"{label} in object meta: {meta.get(key)}",
            )
