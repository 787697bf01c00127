"""The node: runs each pod's first container as a local process group and reports on it.

Like a kubelet it resolves the container's environment when it starts the container
(a missing Secret or ConfigMap leaves the pod Pending with CreateContainerConfigError, and
the start is retried whenever a Secret or ConfigMap is written), writes the container log,
moves the pod through Pending -> Running -> Succeeded/Failed, and on deletion sends SIGTERM,
then SIGKILL after the grace period. Pod objects it was asked to evict are removed once
their processes are gone, which is what "DELETED" in a pod watch means here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from . import pods as podlib
from .meta import JOB_NAME_KEYS
from .processes import PodProcess
from .store import ObjectStore, StoreEvent

__all__ = ["Kubelet", "KubeletConfig", "PodProcessInfo"]

log = structlog.get_logger(__name__)

Key = tuple[str, str]
Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Task[Any]"]


@dataclass(frozen=True)
class KubeletConfig:
    workdir: Path
    api_port: int
    pod_cwd: Path | None = None
    image_env: Mapping[str, str] = field(default_factory=dict)
    image_entrypoints: Mapping[str, list[str]] = field(default_factory=dict)
    max_grace_seconds: float = 5.0


@dataclass(frozen=True)
class PodProcessInfo:
    """One container process the server started (kept after the pod is gone)."""

    namespace: str
    pod: str
    job: str | None
    index: int | None
    pid: int
    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: Path
    log_path: Path


def _now() -> datetime:
    return datetime.now(UTC)


class Kubelet:
    def __init__(
        self,
        store: ObjectStore,
        config: KubeletConfig,
        spawn: Spawn,
        on_pod_finished: Callable[[dict[str, Any]], None],
    ) -> None:
        self.config = config
        self.processes: list[PodProcessInfo] = []
        self._store = store
        self._spawn = spawn
        self._on_pod_finished = on_pod_finished
        self._procs: dict[Key, PodProcess] = {}
        self._starting: dict[Key, float | None] = {}  # pod -> kill grace once it has started
        self._waiting: set[Key] = set()  # blocked on a missing Secret/ConfigMap
        self._terminating: set[Key] = set()
        self._evict: set[Key] = set()
        self._closing = False
        store.subscribe(self._on_write)

    def log_path(self, namespace: str, pod: str, container: str) -> Path:
        return self.config.workdir / "pods" / namespace / pod / f"{container}.log"

    async def run(self, pod: dict[str, Any]) -> None:
        """Start the (stored, Pending) pod's container; returns once it runs or cannot."""
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        key = (namespace, name)
        container = pod["spec"]["containers"][0]
        try:
            env = podlib.container_env(pod, self._base_env(pod), self._lookup)
            argv = podlib.container_argv(container, env, self.config.image_entrypoints)
        except podlib.PodConfigError as exc:
            log.warning(
                "k8s_test.pod.config_error", pod=name, reason=exc.reason, message=exc.message
            )
            if exc.reason == "StartError":
                self._finish(key, 128, reason="StartError", message=exc.message)
            else:
                self._waiting.add(key)
                self._store.update("pods", podlib.waiting_status(pod, exc.reason, exc.message))
            return
        log_path = self.log_path(namespace, name, container["name"])
        cwd = self.config.pod_cwd or log_path.parent
        self._starting[key] = None
        try:
            process = await PodProcess.start(argv, env=env, cwd=cwd, log_path=log_path)
        except OSError as exc:
            self._starting.pop(key, None)
            message = f"exec: {argv[0]!r}: {exc.strerror or exc}"
            _append(log_path, message.encode() + b"\n")
            self._finish(key, 128, reason="StartError", message=message)
            return
        kill_grace = self._starting.pop(key, None)
        self._procs[key] = process
        labels = pod["metadata"].get("labels") or {}
        index = podlib.pod_index(pod)
        self.processes.append(
            PodProcessInfo(
                namespace,
                name,
                labels.get(JOB_NAME_KEYS[0]),
                index,
                process.pid,
                tuple(argv),
                dict(env),
                cwd,
                log_path,
            )
        )
        log.info("k8s_test.pod.started", pod=name, pid=process.pid, argv=argv)
        current = self._store.find("pods", namespace, name)
        if current is not None:
            self._store.update("pods", podlib.running_status(current, process.pid, _now()))
        self._spawn(self._reap(key, process))
        if kill_grace is not None or self._closing:
            self._terminating.add(key)
            self._spawn(process.terminate(kill_grace or 0.0))

    def terminate(self, key: Key, *, evict: bool, grace: float) -> None:
        """Graceful deletion: mark the pod, SIGTERM its group, SIGKILL after `grace`.
        `evict` also removes the pod object once its processes are gone."""
        pod = self._store.find("pods", *key)
        if pod is None:
            return
        if evict:
            self._evict.add(key)
        if pod["status"].get("phase") in ("Succeeded", "Failed"):
            if evict:
                self._evict.discard(key)
                self._store.delete("pods", *key)
            return
        if pod["metadata"].get("deletionTimestamp") is None:
            self._store.update("pods", podlib.deleting(pod, _now(), int(grace)))
        if key in self._terminating:
            return
        process = self._procs.get(key)
        if process is not None:
            self._terminating.add(key)
            self._spawn(process.terminate(grace))
        elif key in self._starting:
            self._starting[key] = grace
        else:  # never started (config error): nothing to kill, it simply ends
            self._finish(
                key,
                -9,
                reason="ContainerStatusUnknown",
                message="The container could not be located when the pod was terminated",
            )

    async def shutdown(self) -> None:
        """Kill every process group now and wait until each has been reaped."""
        self._closing = True
        kills = [p.terminate(0.0) for p in list(self._procs.values())]
        await asyncio.gather(*kills, return_exceptions=True)

    def _base_env(self, pod: dict[str, Any]) -> dict[str, str]:
        env = dict(self.config.image_env)
        port = str(self.config.api_port)
        env.update(
            HOSTNAME=pod["spec"].get("hostname") or pod["metadata"]["name"],
            KUBERNETES_SERVICE_HOST="127.0.0.1",
            KUBERNETES_SERVICE_PORT=port,
            KUBERNETES_PORT=f"tcp://127.0.0.1:{port}",
        )
        return env

    def _lookup(self, resource: str, namespace: str, name: str) -> Mapping[str, str] | None:
        obj = self._store.find(resource, namespace, name)
        return podlib.decode_data(obj) if obj is not None else None

    def _on_write(self, event: StoreEvent) -> None:
        """A Secret or ConfigMap changed: retry the pods that were waiting for one."""
        if event.resource not in ("secrets", "configmaps") or self._closing:
            return
        for key in list(self._waiting):
            self._waiting.discard(key)
            pod = self._store.find("pods", *key)
            if pod is not None and pod["metadata"].get("deletionTimestamp") is None:
                self._spawn(self.run(pod))

    async def _reap(self, key: Key, process: PodProcess) -> None:
        code = await process.wait()
        log.info("k8s_test.pod.exited", pod=key[1], pid=process.pid, returncode=code)
        self._finish(key, code)

    def _finish(
        self, key: Key, returncode: int, *, reason: str | None = None, message: str | None = None
    ) -> None:
        self._procs.pop(key, None)
        self._terminating.discard(key)
        self._waiting.discard(key)
        pod = self._store.find("pods", *key)
        if pod is None:
            return
        self._store.update(
            "pods",
            podlib.terminated_status(pod, returncode, _now(), reason=reason, message=message),
        )
        if key in self._evict:
            self._evict.discard(key)
            self._store.delete("pods", *key)
        self._on_pod_finished(pod)


def _append(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as out:
        out.write(data)
