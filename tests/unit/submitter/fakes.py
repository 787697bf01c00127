"""In-memory fakes of the submitter's ports, with the real interfaces' semantics."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from modelops_bundle.errors import BundleNotFound
from modelops_bundle.oci import BundleIndex, IndexFile, IndexModel
from modelops_bundle.registry_file import dump_registry
from modelops_contracts import (
    Event,
    JobRecord,
    ModelEntry,
    ParameterSpace,
    Registry,
    TaskCompleted,
    TaskFailed,
    TrackedFile,
)
from modelops_runtime.blobstore import BlobLocation, FileBlobStore
from modelops_submitter.handlers import SubmitterDeps
from modelops_submitter.launchers.base import LaunchRequest
from modelops_submitter.ports import RecordChange
from modelops_submitter.settings import Settings
from modelops_submitter.tracking import Tracking

__all__ = [
    "DIGEST",
    "REF",
    "FakeBundles",
    "FakeEventBus",
    "FakeJobRecords",
    "FakeLauncher",
    "FakeQueue",
    "ManualClock",
    "make_deps",
    "sir_index",
]

DIGEST = "sha256:" + "ab" * 32
REF = f"registry.test:5000/models/sir@{DIGEST}"
_FILE_DIGEST = "sha256:" + "cd" * 32


def sir_index(
    *, parameters: list[str] | None = None, space: ParameterSpace | None = None
) -> BundleIndex:
    model = IndexModel(
        id="sir",
        entrypoint="model:StochasticSIR",
        path="model.py",
        digest="sha256:" + "ef" * 32,
        code=["model.py"],
        outputs=["incidence", "summary"],
        scenarios=["baseline", "lockdown"],
        parameters=["beta", "gamma"] if parameters is None else parameters,
    )
    registry_yaml = ""
    if space is not None:  # ranges travel in the registry.yaml the bundle embeds
        entry = ModelEntry(
            id="sir",
            entrypoint="model:StochasticSIR",
            path="model.py",
            code=[TrackedFile(path="model.py", digest=_FILE_DIGEST, size=10)],
            parameters=model.parameters,
            parameter_space=space,
        )
        registry_yaml = dump_registry(Registry(project="demo", models={"sir": entry})).decode()
    return BundleIndex(
        project="demo",
        files=[IndexFile(path="model.py", digest=_FILE_DIGEST, size=10)],
        models={"sir": model},
        registry_yaml=registry_yaml,
    )


class ManualClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeJobRecords:
    def __init__(self) -> None:
        self.records: dict[str, JobRecord] = {}
        self.writes = 0

    async def get(self, job_id: str) -> JobRecord | None:
        return self.records.get(job_id)

    async def create(self, record: JobRecord) -> bool:
        if record.job_id in self.records:
            return False
        self.records[record.job_id] = record
        self.writes += 1
        return True

    async def update(self, job_id: str, change: RecordChange) -> JobRecord | None:
        current = self.records.get(job_id)
        if current is None:
            return None
        new = change(current)
        if new is None:
            return current
        self.records[job_id] = new
        self.writes += 1
        return new

    async def list(self) -> list[JobRecord]:
        return list(self.records.values())


class FakeQueue:
    def __init__(self) -> None:
        self.consumers: dict[str, dict[str, float]] = {}
        self.messages: dict[str, dict[str, bytes]] = {}
        self.publishes = 0

    async def create_consumer(
        self, job_id: str, *, ack_wait_s: float, max_deliver: int, max_ack_pending: int
    ) -> str:
        self.consumers[job_id] = {
            "ack_wait_s": ack_wait_s,
            "max_deliver": max_deliver,
            "max_ack_pending": max_ack_pending,
        }
        return f"runners-{job_id}"

    async def enqueue(self, job_id: str, messages: Iterable[tuple[str, bytes]]) -> int:
        queue = self.messages.setdefault(job_id, {})
        n = 0
        for msg_id, payload in messages:
            queue.setdefault(msg_id, payload)  # Nats-Msg-Id de-duplication
            self.publishes += 1
            n += 1
        return n

    async def delete_consumer(self, job_id: str) -> None:
        self.consumers.pop(job_id, None)

    async def purge(self, job_id: str) -> int:
        return len(self.messages.pop(job_id, {}))

    async def queued(self, job_id: str) -> int:
        return len(self.messages.get(job_id, {}))


class FakeEventBus:
    """An append-only stream with sequences; `replay` reads it like the real one."""

    def __init__(self) -> None:
        self.stream: list[Event] = []
        self.replays: list[tuple[str, int]] = []
        self.published = asyncio.Event()

    async def publish(self, event: Event) -> None:
        self.stream.append(event)
        self.published.set()

    async def next_sequence(self) -> int:
        return len(self.stream) + 1

    async def replay(
        self, job_id: str, start_seq: int
    ) -> AsyncIterator[TaskCompleted | TaskFailed]:
        self.replays.append((job_id, start_seq))
        for event in list(self.stream[start_seq - 1 :]):
            if isinstance(event, TaskCompleted | TaskFailed) and event.job_id == job_id:
                yield event

    def of(self, kind: type) -> list:
        return [e for e in self.stream if isinstance(e, kind)]


class FakeBundles:
    def __init__(self, indexes: dict[str, BundleIndex], tags: dict[str, str] | None = None) -> None:
        self.indexes = indexes  # "repo@digest" -> index
        self.tags = tags or {}  # "repo:tag" -> digest

    async def resolve(self, repository: str, tag: str) -> str:
        try:
            return self.tags[f"{repository}:{tag}"]
        except KeyError:
            raise BundleNotFound(f"no tag {tag} in {repository}") from None

    async def index(self, repository: str, digest: str) -> BundleIndex:
        try:
            return self.indexes[f"{repository}@{digest}"]
        except KeyError:
            raise BundleNotFound(f"no manifest {digest} in {repository}") from None


@dataclass
class FakeLauncher:
    name: str = "local"
    launched: list[LaunchRequest] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)

    async def launch(self, request: LaunchRequest) -> None:
        if not await self.has_runners(request.job_id):
            self.launched.append(request)
            if request.job_id in self.stopped:
                self.stopped.remove(request.job_id)

    async def stop(self, job_id: str) -> None:
        self.stopped.append(job_id)

    async def has_runners(self, job_id: str) -> bool:
        launched = any(r.job_id == job_id for r in self.launched)
        return launched and job_id not in self.stopped

    async def close(self) -> None:
        return None


_ids = itertools.count()


def make_deps(
    tmp_path: Path,
    *,
    bundles: FakeBundles | None = None,
    clock: ManualClock | None = None,
    launchers: dict | None = None,
) -> SubmitterDeps:
    clock = clock or ManualClock()
    settings = Settings(state_dir=tmp_path / f"state-{next(_ids)}")
    blobs = FileBlobStore(BlobLocation(scheme="file", root=str(tmp_path / "blobs")))
    jobs, queue, events = FakeJobRecords(), FakeQueue(), FakeEventBus()
    tracking = Tracking(
        jobs=jobs, events=events, blobs=blobs, queue=queue, clock=clock, retry_delay_s=0.0
    )
    return SubmitterDeps(
        settings=settings,
        jobs=jobs,
        queue=queue,
        events=events,
        blobs=blobs,
        bundles=bundles or FakeBundles({f"models/sir@{DIGEST}": sir_index()}),
        launchers=launchers or {"local": FakeLauncher()},
        tracking=tracking,
        clock=clock,
    )
