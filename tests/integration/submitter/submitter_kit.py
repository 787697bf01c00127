"""Helpers for the submitter's integration tests: the example bundle, settings pointing at the
test servers, a running submitter (in this process or as `python -m modelops_submitter`), and
a watcher that collects a job's events from the bus."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import pyarrow as pa
import pyarrow.parquet as pq

from modelops_bundle.push import push_bundle
from modelops_bundle.registration import register_model
from modelops_bundle.registry_file import dump_registry, load_registry
from modelops_bundle.stores import open_store
from modelops_contracts import (
    Command,
    Event,
    LaunchOptions,
    ParameterSet,
    SimulationStudy,
    SubmitJob,
    decode_event,
    encode,
)
from modelops_runtime.blobstore import BlobStore
from modelops_submitter.app import create_app
from modelops_submitter.bootstrap import Runtime, bootstrap
from modelops_submitter.settings import KubernetesSettings, Settings

__all__ = [
    "EXAMPLE_SIR",
    "EventWatch",
    "SubmitterProcess",
    "push_example_bundle",
    "read_table",
    "running_submitter",
    "send",
    "send_raw",
    "settings_for",
    "sir_study",
    "submitter_env",
    "with_options",
]

REPO = Path(__file__).resolve().parents[3]
EXAMPLE_SIR = REPO / "examples" / "sir"


def push_example_bundle(tmp: Path, registry_host: str) -> str:
    """Register examples/sir's StochasticSIR in a copy of the project and push it."""
    project = tmp / "sir"
    shutil.copytree(
        EXAMPLE_SIR, project, ignore=shutil.ignore_patterns(".modelops*", "__pycache__")
    )
    shutil.copy(EXAMPLE_SIR / ".modelopsignore", project / ".modelopsignore")
    register_model(project, "model:StochasticSIR", "src/model.py", data=["data"])
    registry = load_registry(project)
    store = open_store(registry_host)
    try:
        pushed = push_bundle(
            project,
            registry,
            store,
            repository=f"test/sir-{uuid.uuid4().hex[:8]}",
            registry_yaml=dump_registry(registry),
            tag="latest",
        )
    finally:
        store.close()
    return pushed.bundle.bundle_ref


def sir_study(
    n_sets: int, replicates: int, *, name: str = "sir-study", **kw: Any
) -> SimulationStudy:
    """Distinct parameter sets inside the model's declared ranges (up to 100,000 of them)."""
    sets = [
        ParameterSet(
            params={
                "beta": round(0.02 + 0.06 * (i % 10) / 10, 6),
                "gamma": round(0.08 + 0.1 * ((i // 10) % 100) / 100, 6),
                "I0": 1 + i // 1000,
            }
        )
        for i in range(n_sets)
    ]
    return SimulationStudy(
        model="model:StochasticSIR", parameter_sets=sets, n_replicates=replicates, name=name, **kw
    )


def settings_for(
    tmp: Path,
    *,
    nats_url: str,
    s3_endpoint: str,
    bucket: str,
    registry_host: str,
    **kw: Any,
) -> Settings:
    return Settings(
        state_dir=tmp / "state",
        nats_url=nats_url,
        blob_store=f"s3://{bucket}/modelops",
        bundle_store=registry_host,
        s3_endpoint=s3_endpoint,
        task_ack_wait_s=kw.pop("task_ack_wait_s", 5.0),
        progress_interval_s=kw.pop("progress_interval_s", 0.2),
        local_stop_grace_s=kw.pop("local_stop_grace_s", 5.0),
        kubernetes=kw.pop("kubernetes", KubernetesSettings()),
        **kw,
    )


def submitter_env(settings: Settings, s3_keys: Mapping[str, str]) -> dict[str, str]:
    """The environment a `python -m modelops_submitter` needs for `settings`."""
    return {
        **os.environ,
        **s3_keys,
        "MODELOPS_STATE_DIR": str(settings.state_dir),
        "MODELOPS_NATS_URL": settings.nats_url,
        "MODELOPS_BLOB_STORE": settings.blob_store,
        "MODELOPS_BUNDLE_STORE": settings.bundle_store,
        "MODELOPS_S3_ENDPOINT": settings.s3_endpoint or "",
        "MODELOPS_TASK_ACK_WAIT_S": str(settings.task_ack_wait_s),
        "MODELOPS_PROGRESS_INTERVAL_S": str(settings.progress_interval_s),
        "MODELOPS_LOG_FORMAT": "json",
    }


@contextlib.asynccontextmanager
async def running_submitter(settings: Settings, **kw: Any) -> AsyncIterator[Runtime]:
    """The submitter app, started in this process, stopped and closed on exit."""
    runtime = await bootstrap(settings, **kw)
    try:
        async with create_app(runtime):
            yield runtime
    finally:
        await runtime.close()


async def send(nc: nats.NATS, command: Command) -> None:
    await nc.jetstream().publish(
        command.subject, encode(command), headers={"Nats-Msg-Id": command.id}
    )


async def send_raw(nc: nats.NATS, subject: str, data: bytes) -> None:
    await nc.jetstream().publish(subject, data, headers={"Nats-Msg-Id": uuid.uuid4().hex})


@dataclass
class EventWatch:
    """Every event on the bus, as it arrives (a core subscription on modelops.evt.>)."""

    events: list[Event] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    @contextlib.asynccontextmanager
    async def on(cls, nc: nats.NATS) -> AsyncIterator[EventWatch]:
        watch = cls()

        async def on_msg(msg: Any) -> None:
            watch.events.append(decode_event(msg.data))
            watch.changed.set()

        sub = await nc.subscribe("modelops.evt.>", cb=on_msg)
        try:
            yield watch
        finally:
            await sub.unsubscribe()

    def matching(self, kind: type, **fields: Any) -> list[Any]:
        return [
            e
            for e in self.events
            if isinstance(e, kind) and all(getattr(e, k, None) == v for k, v in fields.items())
        ]

    async def first(self, kind: type, *, within: float = 60.0, **fields: Any) -> Any:
        """The first event of `kind` with these field values, waiting up to `within` s."""
        async with asyncio.timeout(within):
            while not (found := self.matching(kind, **fields)):
                self.changed.clear()
                await self.changed.wait()
        return found[0]


async def read_table(store: BlobStore, key: str) -> pa.Table:
    return pq.read_table(io.BytesIO(await store.get_bytes(key)))


class SubmitterProcess:
    """`python -m modelops_submitter` as a child process, so a test can kill -9 it."""

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self.env = dict(env)
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SubmitterProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "modelops_submitter"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def kill(self) -> None:
        """SIGKILL the submitter alone: its runners (own sessions) keep running."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def with_options(study: SimulationStudy, bundle_ref: str, **options: Any) -> SubmitJob:
    return SubmitJob(
        correlation_id=f"test-{uuid.uuid4().hex[:8]}",
        bundle_ref=bundle_ref,
        study=study,
        options=LaunchOptions(**options),
    )
