"""`KubeApiTestServer`: the Kubernetes API double, run on its own thread and event loop.

Tests (and the launcher under test) talk to it only through the real `kubernetes` client
over plain HTTP on 127.0.0.1. The thread owns all server state; the few test-side helpers
(`add_secret`, `pod_processes`, ...) hop onto that loop and wait for the answer.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Self, TypeVar

import structlog
from aiohttp import web
from kubernetes import client

from modelops_runtime.processes import StartStop

from .cluster import Cluster
from .kubelet import KubeletConfig, PodProcessInfo
from .routes import RecordedRequest, RequestLog, build_app

__all__ = ["DEFAULT_IMAGE_ENV_KEYS", "KubeApiTestServer"]

log = structlog.get_logger(__name__)

_T = TypeVar("_T")

# What a container image would define; everything else of the test process stays out of
# the pod, so a runner that only works because it inherits the test's environment fails.
DEFAULT_IMAGE_ENV_KEYS = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")


class KubeApiTestServer(StartStop):
    """A batch/v1 Job API server that runs each pod's command as a local process group.

    `workdir` holds pod logs (``pods/<ns>/<pod>/<container>.log``); a temporary one is
    made and removed if not given. Pods run in `pod_cwd` (default: their log folder) with
    `image_env` (default: `DEFAULT_IMAGE_ENV_KEYS` from this process) as the image's
    environment. `image_entrypoints` maps an image to the argv that stands in for its
    entrypoint when a container gives no command. Graceful kills wait at most
    `max_grace_seconds` before SIGKILL, whatever terminationGracePeriodSeconds says.

    ::

        with KubeApiTestServer(workdir=tmp_path / "k8s") as server, server.api_client() as api:
            server.add_secret("ns", "bus-creds", {"NATS_TOKEN": "t"})
            client.BatchV1Api(api).create_namespaced_job("ns", manifest)
            ...  # watch the Job; server.requests_to("POST", ...) shows what was sent

    Not modelled: the real replacement back-off delay (failed pods are replaced at once),
    restartPolicy OnFailure restarts in place (a new pod is made, as with Never), init and
    sidecar containers (only the first container runs), volumes, resources, ttl-based
    deletion (recorded, never acted on), namespaces (any name is accepted).
    """

    def __init__(
        self,
        *,
        workdir: Path | None = None,
        pod_cwd: Path | None = None,
        image_env: Mapping[str, str] | None = None,
        image_entrypoints: Mapping[str, Sequence[str]] | None = None,
        max_grace_seconds: float = 5.0,
        start_timeout: float = 10.0,
    ) -> None:
        self._own_workdir = workdir is None
        self._workdir = workdir
        self._pod_cwd = pod_cwd
        if image_env is None:
            image_env = {k: os.environ[k] for k in DEFAULT_IMAGE_ENV_KEYS if k in os.environ}
        self._image_env = dict(image_env)
        self._entrypoints = {k: list(v) for k, v in (image_entrypoints or {}).items()}
        self._max_grace = max_grace_seconds
        self._start_timeout = start_timeout
        self._requests = RequestLog()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._cluster: Cluster | None = None
        self._port: int | None = None
        self._failure: BaseException | None = None

    # ---- lifecycle --------------------------------------------------------------------

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("KubeApiTestServer is already started")
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="k8s-api-test-"))
        self._workdir.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._thread_main, name="k8s-api-test", daemon=True)
        self._thread.start()
        if not self._ready.wait(self._start_timeout):
            raise RuntimeError(f"KubeApiTestServer did not start within {self._start_timeout}s")
        if self._failure is not None:
            raise RuntimeError("KubeApiTestServer failed to start") from self._failure
        log.info("k8s_test.server.started", host=self.host, workdir=str(self._workdir))
        return self

    def stop(self) -> None:
        """Kill every pod process, close watches and the socket; idempotent."""
        thread, loop, stop_event = self._thread, self._loop, self._stop_event
        if thread is None:
            return
        if loop is not None and stop_event is not None and thread.is_alive():
            loop.call_soon_threadsafe(stop_event.set)
        thread.join(timeout=30)
        if thread.is_alive():
            raise RuntimeError("KubeApiTestServer thread did not stop within 30s")
        self._thread = None
        if self._own_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
        if self._failure is not None:
            raise RuntimeError("KubeApiTestServer stopped with an error") from self._failure

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # handed to the starting thread, never swallowed
            self._failure = exc
            self._ready.set()

    async def _serve(self) -> None:
        assert self._workdir is not None
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        cluster = Cluster(
            KubeletConfig(
                workdir=self._workdir,
                api_port=port,
                pod_cwd=self._pod_cwd,
                image_env=self._image_env,
                image_entrypoints=self._entrypoints,
                max_grace_seconds=self._max_grace,
            )
        )
        runner = web.AppRunner(
            build_app(cluster, self._requests), access_log=None, shutdown_timeout=2.0
        )
        await runner.setup()
        try:
            await web.SockSite(runner, sock).start()
            self._loop, self._cluster, self._port = asyncio.get_running_loop(), cluster, port
            self._stop_event = asyncio.Event()
            self._ready.set()
            await self._stop_event.wait()
        finally:
            await cluster.shutdown()
            await runner.cleanup()
            sock.close()

    # ---- client side ------------------------------------------------------------------

    @property
    def host(self) -> str:
        """``http://127.0.0.1:PORT``, the `host` of a client `Configuration`."""
        if self._port is None:
            raise RuntimeError("KubeApiTestServer is not started; use it as a context manager")
        return f"http://127.0.0.1:{self._port}"

    @property
    def workdir(self) -> Path:
        assert self._workdir is not None
        return self._workdir

    def configuration(self) -> client.Configuration:
        config = client.Configuration(host=self.host)
        config.verify_ssl = False
        return config

    def api_client(self) -> client.ApiClient:
        """A new client for this server; close it (``with server.api_client() as api:``)."""
        return client.ApiClient(self.configuration())

    # ---- test-side state --------------------------------------------------------------

    def add_secret(self, namespace: str, name: str, data: Mapping[str, str]) -> None:
        """Create or replace an Opaque Secret with these (plain text) values."""
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "stringData": dict(data),
        }
        self._call(lambda c: c.put_core("secrets", namespace, body))

    def add_config_map(self, namespace: str, name: str, data: Mapping[str, str]) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name},
            "data": dict(data),
        }
        self._call(lambda c: c.put_core("configmaps", namespace, body))

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first."""
        return self._requests.snapshot()

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method.upper() and r.path == path]

    def pod_processes(
        self, namespace: str | None = None, job: str | None = None
    ) -> list[PodProcessInfo]:
        """Every container process started so far (also those of deleted pods)."""
        return self._call(
            lambda c: [
                p
                for p in c.kubelet.processes
                if namespace in (None, p.namespace) and job in (None, p.job)
            ]
        )

    @property
    def errors(self) -> list[BaseException]:
        """Internal errors of background tasks; a healthy run leaves this empty."""
        return self._call(lambda c: list(c.errors))

    def _call(self, fn: Callable[[Cluster], _T]) -> _T:
        loop, cluster = self._loop, self._cluster
        if loop is None or cluster is None or self._thread is None:
            raise RuntimeError("KubeApiTestServer is not running")

        async def run() -> _T:
            return fn(cluster)

        future = asyncio.run_coroutine_threadsafe(run(), loop)
        return future.result(timeout=10)
