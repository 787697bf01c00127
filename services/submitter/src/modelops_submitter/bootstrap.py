"""The one place that builds real clients: NATS/JetStream, the blob store, the bundle store and
(when configured) the Kubernetes API, wired into the handlers' dependencies."""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from modelops_bundle.stores import open_store
from modelops_contracts.subjects import COMMANDS_STREAM, EVENTS_STREAM, command_subject
from modelops_runtime.blobstore import open_blob_store
from modelops_runtime.nats_setup import connect, ensure_jetstream

from .adapters.bundles import StoreBundleIndexes
from .adapters.events import JetStreamEventBus, task_event_subjects
from .adapters.jobs_kv import KvJobRecords
from .adapters.task_queue import JetStreamTaskQueue
from .errors import ConfigError
from .handlers import SubmitterDeps
from .launchers.base import Launcher
from .launchers.local import LocalLauncher
from .settings import KubernetesSettings, Settings
from .tracking import Tracking

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = [
    "COMMANDS_CONSUMER",
    "EVENTS_CONSUMER",
    "Runtime",
    "bootstrap",
    "commands_consumer_config",
    "events_consumer_config",
    "kubernetes_api_client",
]

log = structlog.get_logger(__name__)

COMMANDS_CONSUMER = "submitter"
EVENTS_CONSUMER = "submitter-tracker"


@dataclass
class Runtime:
    """The built dependencies plus the clients behind them (closed by `close`)."""

    settings: Settings
    deps: SubmitterDeps
    nc: Client
    js: JetStreamContext
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def close(self) -> None:
        for close in reversed(self.closers):
            await close()
        self.closers.clear()


def commands_consumer_config(settings: Settings) -> ConsumerConfig:
    """SubmitJob and CancelJob, one at a time (a submit and a cancel of one job never race)."""
    return ConsumerConfig(
        durable_name=COMMANDS_CONSUMER,
        name=COMMANDS_CONSUMER,
        description="submitter: SubmitJob and CancelJob",
        filter_subjects=[command_subject("submit_job"), command_subject("cancel_job")],
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        # The handler heartbeats a long submit, so ack_wait only bounds how long a crashed
        # submitter holds a command before it is redelivered.
        ack_wait=settings.command_ack_wait_s,
        max_deliver=settings.command_max_deliver,
        max_ack_pending=16,
    )


def events_consumer_config(settings: Settings) -> ConsumerConfig:
    """Every job's task results. NEW on creation: older jobs are rebuilt by replay."""
    return ConsumerConfig(
        durable_name=EVENTS_CONSUMER,
        name=EVENTS_CONSUMER,
        description="submitter tracker: TaskCompleted and TaskFailed of every job",
        filter_subjects=task_event_subjects(),
        deliver_policy=DeliverPolicy.NEW,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=settings.event_ack_wait_s,
        max_deliver=10,
        max_ack_pending=8192,
    )


def kubernetes_api_client(k8s: KubernetesSettings) -> ApiClient:
    """An API client: an explicit host, else in-cluster config in a pod, else the kubeconfig.

    The kubernetes package is imported here, not at module load: it costs ~35 MB of memory
    that a submitter with only the local launcher never needs.
    """
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config

    if k8s.api_host:
        configuration = k8s_client.Configuration()
        configuration.host = k8s.api_host
        return k8s_client.ApiClient(configuration)
    try:
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            k8s_config.load_incluster_config()
        else:
            k8s_config.load_kube_config(config_file=k8s.kubeconfig, context=k8s.context)
    except (k8s_config.ConfigException, OSError) as exc:
        raise ConfigError(
            f"no Kubernetes configuration: {exc}",
            hint="run in a pod with a service account, set KUBECONFIG, or MODELOPS_K8S_API",
        ) from exc
    return k8s_client.ApiClient()


async def _ensure_consumers(js: JetStreamContext, settings: Settings) -> None:
    for stream, config in (
        (COMMANDS_STREAM, commands_consumer_config(settings)),
        (EVENTS_STREAM, events_consumer_config(settings)),
    ):
        await js.add_consumer(stream, config)  # creates, or updates to these settings


async def bootstrap(
    settings: Settings,
    *,
    launchers: dict[str, Launcher] | None = None,
    clock: Callable[[], float] = time.time,
) -> Runtime:
    """Connect and build everything; `launchers` replaces the configured ones (tests)."""
    nc = await connect(
        settings.nats_url, name="modelops-submitter", credentials=settings.nats_creds
    )
    runtime_closers: list[Callable[[], Awaitable[None]]] = [nc.close]
    try:
        js = nc.jetstream(publish_async_max_pending=settings.publish_max_pending)
        await ensure_jetstream(js)
        await _ensure_consumers(js, settings)
        jobs = await KvJobRecords.open(js)
        blobs = open_blob_store(settings.blob_store, endpoint_url=settings.s3_endpoint)
        runtime_closers.append(blobs.close)
        bundles = StoreBundleIndexes(open_store(settings.bundle_store))
        runtime_closers.append(bundles.aclose)
        if launchers is None:
            launchers = {
                "local": LocalLauncher(
                    settings.jobs_dir,
                    settings.runner_command,
                    stop_grace_s=settings.local_stop_grace_s,
                )
            }
            if settings.launcher == "kubernetes" or settings.kubernetes.api_host:
                from .launchers.kubernetes import KubernetesLauncher

                launchers["kubernetes"] = KubernetesLauncher(
                    kubernetes_api_client(settings.kubernetes), settings.kubernetes
                )
        for launcher in launchers.values():
            runtime_closers.append(launcher.close)
        queue = JetStreamTaskQueue(nc, js)
        events = JetStreamEventBus(js)
        tracking = Tracking(
            jobs=jobs,
            events=events,
            blobs=blobs,
            queue=queue,
            clock=clock,
            progress_interval_s=settings.progress_interval_s,
        )
        runtime_closers.append(tracking.close)
    except BaseException:
        for close in reversed(runtime_closers):
            await close()
        raise
    deps = SubmitterDeps(
        settings=settings,
        jobs=jobs,
        queue=queue,
        events=events,
        blobs=blobs,
        bundles=bundles,
        launchers=launchers,
        tracking=tracking,
        clock=clock,
    )
    log.info(
        "submitter.ready",
        nats=settings.nats_url,
        blob_store=blobs.uri,
        bundle_store=settings.bundle_store,
        launchers=sorted(launchers),
        default_launcher=settings.launcher,
    )
    return Runtime(settings=settings, deps=deps, nc=nc, js=js, closers=runtime_closers)
