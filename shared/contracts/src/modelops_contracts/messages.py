"""Commands and events: every message on the bus.

Each message is a frozen msgspec Struct with a stable wire tag in the `type` field, so one
decoder reads any of them and a class rename can never change the wire format. Envelope fields
follow CloudEvents attribute names (`id`, `type`, `source`, `time`, `specversion`) plus our own
`schema_version` and `correlation_id`, which ties every event back to the command that caused it.
New fields must have defaults (schema evolution); a breaking change is a new `type` tag.
"""

from __future__ import annotations

import datetime as _dt
import uuid
from typing import Annotated, ClassVar, Literal

import msgspec

from .domain import BundleRefStr, JobId, Resources, SimJob, SimulationStudy
from .errors import InvalidMessage
from .refs import Digest
from .registry import ModelEntry, Registry
from .subjects import (
    BUNDLE_EVENTS,
    MODEL_EVENTS,
    REJECTED_EVENTS,
    command_subject,
    job_event_subject,
)

__all__ = [
    "BuildBundle",
    "BundleFailed",
    "BundlePushed",
    "CancelJob",
    "Command",
    "CommandRejected",
    "Event",
    "JobCancelled",
    "JobCompleted",
    "JobProgress",
    "JobSubmitted",
    "LaunchOptions",
    "Message",
    "ModelRegistered",
    "RegisterModel",
    "SubmitJob",
    "TaskCompleted",
    "TaskFailed",
    "TaskMetrics",
    "new_message_id",
    "utc_now",
]

SCHEMA_VERSION = 1


def new_message_id() -> str:
    return uuid.uuid4().hex


def utc_now() -> str:
    """RFC 3339 UTC timestamp with microseconds, as CloudEvents `time` wants."""
    return _dt.datetime.now(_dt.UTC).isoformat().replace("+00:00", "Z")


NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class Message(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every bus message. `id` is the message id (and the Nats-Msg-Id on publish)."""

    correlation_id: NonEmpty
    id: NonEmpty = msgspec.field(default_factory=new_message_id)
    source: str = "modelops"
    time: str = msgspec.field(default_factory=utc_now)
    specversion: str = "1.0"
    schema_version: int = SCHEMA_VERSION

    kind: ClassVar[str] = ""

    @property
    def subject(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError


# ---------------------------------------------------------------- commands


class Command(Message, frozen=True, kw_only=True):
    """Imperative: asks a service to do something. Answered by events or CommandRejected."""

    @property
    def subject(self) -> str:
        return command_subject(self.kind)


class RegisterModel(Command, frozen=True, kw_only=True, tag="modelops.cmd.register_model"):
    """Record one model (entrypoint + tracked files) in a project's registry."""

    kind: ClassVar[str] = "register_model"
    project: NonEmpty
    model: ModelEntry


class BuildBundle(Command, frozen=True, kw_only=True, tag="modelops.cmd.build_bundle"):
    """Compose and push a bundle. With `registry` unset the bundler uses the registrar's copy."""

    kind: ClassVar[str] = "build_bundle"
    project: NonEmpty
    repository: NonEmpty
    registry: Registry | None = None
    tag: str | None = None
    models: list[str] | None = None


class LaunchOptions(msgspec.Struct, frozen=True, kw_only=True):
    """How to run a job: how many runners, where, and how patient to be with each task."""

    runners: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1
    workers_per_runner: Annotated[int, msgspec.Meta(ge=0, le=1024)] = 0  # 0 = one per core
    resources: Resources = Resources()
    task_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 3600.0
    max_retries: Annotated[int, msgspec.Meta(ge=0, le=100)] = 2
    recycle_after: Annotated[int, msgspec.Meta(ge=0)] = 0  # 0 = never recycle workers
    launcher: Literal["default", "local", "kubernetes"] = "default"


class SubmitJob(Command, frozen=True, kw_only=True, tag="modelops.cmd.submit_job"):
    """Run a study (or a ready SimJob) on a bundle. A resent command with the same
    `idempotency_key` returns the same job instead of a second one."""

    kind: ClassVar[str] = "submit_job"
    bundle_ref: NonEmpty  # host/repo@sha256:… or host/repo:tag (resolved once, at submit)
    study: SimulationStudy | None = None
    job: SimJob | None = None
    job_id: JobId | None = None
    options: LaunchOptions = LaunchOptions()
    idempotency_key: str | None = None

    def __post_init__(self) -> None:
        if (self.study is None) == (self.job is None):
            raise InvalidMessage(
                "SubmitJob needs exactly one of 'study' or 'job'",
                field="job" if self.job is not None else "study",  # the surplus or the usual one
            )


class CancelJob(Command, frozen=True, kw_only=True, tag="modelops.cmd.cancel_job"):
    kind: ClassVar[str] = "cancel_job"
    job_id: JobId
    reason: str = "cancelled by user"


# ---------------------------------------------------------------- events


class Event(Message, frozen=True, kw_only=True):
    """Past tense: something happened. Consumers never reject events, they log and skip."""


class ModelRegistered(Event, frozen=True, kw_only=True, tag="modelops.evt.model_registered"):
    kind: ClassVar[str] = "model_registered"
    project: str
    model: ModelEntry
    model_digest: Digest
    revision: int

    @property
    def subject(self) -> str:
        return f"{MODEL_EVENTS}.{self.kind}"


class BundlePushed(Event, frozen=True, kw_only=True, tag="modelops.evt.bundle_pushed"):
    kind: ClassVar[str] = "bundle_pushed"
    project: str
    bundle_ref: BundleRefStr
    digest: Digest
    repository: str
    tag: str | None = None
    models: dict[str, Digest] = {}  # model id -> model digest
    size: int = 0

    @property
    def subject(self) -> str:
        return f"{BUNDLE_EVENTS}.{self.kind}"


class BundleFailed(Event, frozen=True, kw_only=True, tag="modelops.evt.bundle_failed"):
    kind: ClassVar[str] = "bundle_failed"
    project: str
    reason: str
    missing_blobs: list[str] = []  # paths whose blobs the registry lacks

    @property
    def subject(self) -> str:
        return f"{BUNDLE_EVENTS}.{self.kind}"


class _JobEvent(Event, frozen=True, kw_only=True):
    job_id: str

    @property
    def subject(self) -> str:
        return job_event_subject(self.job_id, self.kind)


class JobSubmitted(_JobEvent, frozen=True, kw_only=True, tag="modelops.evt.job_submitted"):
    kind: ClassVar[str] = "job_submitted"
    bundle_ref: BundleRefStr
    n_tasks: int
    n_cached: int = 0
    spec_uri: str = ""
    launcher: str = ""
    study: str = ""


class JobProgress(_JobEvent, frozen=True, kw_only=True, tag="modelops.evt.job_progress"):
    kind: ClassVar[str] = "job_progress"
    total: int
    completed: int
    failed: int
    cached: int = 0
    rate_per_s: float = 0.0


class TaskMetrics(msgspec.Struct, frozen=True, kw_only=True):
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_bytes: int = 0


class TaskCompleted(_JobEvent, frozen=True, kw_only=True, tag="modelops.evt.task_completed"):
    kind: ClassVar[str] = "task_completed"
    task_id: str
    attempt: int = 1
    # output name -> where it is: a Parquet file's blob URI, with '#rows=<start>-<stop>' when
    # the file is a pack shared with other tasks (outputs.parse_output_ref)
    outputs: dict[str, str] = {}
    metrics: TaskMetrics = TaskMetrics()
    runner_id: str = ""
    cached: bool = False


TaskFailureKind = Literal[
    "model_error",
    "timeout",
    "crashed",
    "signal",
    "oom",
    "bad_output",
    "import_error",
    "infrastructure",
]


class TaskFailed(_JobEvent, frozen=True, kw_only=True, tag="modelops.evt.task_failed"):
    kind: ClassVar[str] = "task_failed"
    task_id: str
    failure: TaskFailureKind
    message: str
    attempt: int = 1
    final: bool = True  # False: the task will be retried
    error_type: str = ""
    traceback_tail: str = ""
    stderr_tail: str = ""
    exit_code: int | None = None
    signal: int | None = None
    runner_id: str = ""


class JobCompleted(_JobEvent, frozen=True, kw_only=True, tag="modelops.evt.job_completed"):
    kind: ClassVar[str] = "job_completed"
    total: int
    completed: int
    failed: int
    cached: int = 0
    results_uri: str = ""
    duration_s: float = 0.0


class JobCancelled(_JobEvent, frozen=True, kw_only=True, tag="modelops.evt.job_cancelled"):
    kind: ClassVar[str] = "job_cancelled"
    reason: str = ""
    purged_tasks: int = 0


class CommandRejected(Event, frozen=True, kw_only=True, tag="modelops.evt.command_rejected"):
    """A command could not be carried out. `field` names the part at fault, `hint` the fix."""

    kind: ClassVar[str] = "command_rejected"
    command_type: str
    command_id: str
    reason: str
    field: str | None = None
    hint: str | None = None
    job_id: str | None = None

    @property
    def subject(self) -> str:
        return f"{REJECTED_EVENTS}.{self.kind}"


COMMANDS: tuple[type[Command], ...] = (RegisterModel, BuildBundle, SubmitJob, CancelJob)
EVENTS: tuple[type[Event], ...] = (
    ModelRegistered,
    BundlePushed,
    BundleFailed,
    JobSubmitted,
    JobProgress,
    TaskCompleted,
    TaskFailed,
    JobCompleted,
    JobCancelled,
    CommandRejected,
)
AnyCommand = RegisterModel | BuildBundle | SubmitJob | CancelJob
AnyEvent = (
    ModelRegistered
    | BundlePushed
    | BundleFailed
    | JobSubmitted
    | JobProgress
    | TaskCompleted
    | TaskFailed
    | JobCompleted
    | JobCancelled
    | CommandRejected
)
AnyMessage = AnyCommand | AnyEvent
