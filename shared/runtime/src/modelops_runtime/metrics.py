"""The Prometheus metrics every ModelOps service shares, in one registry per process.

One `Metrics` per process owns its own `CollectorRegistry` (never the global default, so the
embedded stack and tests can hold several side by side); `metrics.for_service("submitter")` gives
a view whose methods fill the shared families with that service's label. Label values are kept to
bounded sets: a subject becomes its message kind (`submit_job`, `task_completed`, `task`), never a
job id, so the series count cannot grow with the number of jobs.

Queue depth cannot be read at scrape time (`collect()` is synchronous, JetStream is not), so
`QueueDepthPoller` sets the gauge from consumer/stream info every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Self, get_args

import nats.errors
import nats.js.errors
import structlog
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from modelops_contracts import subjects
from modelops_contracts.messages import COMMANDS, EVENTS

__all__ = [
    "CONTENT_TYPE",
    "TASK_DURATION_BUCKETS",
    "Metrics",
    "Outcome",
    "QueueDepthPoller",
    "QueueTarget",
    "ServiceMetrics",
    "subject_kind",
]

log = structlog.get_logger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST
Outcome = Literal["acked", "nacked", "rejected", "terminated"]
_OUTCOMES: frozenset[str] = frozenset(get_args(Outcome))
# Simulation tasks run from milliseconds (toy models) to hours; buckets span that range.
TASK_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400)
_KNOWN_KINDS: frozenset[str] = frozenset(m.kind for m in (*COMMANDS, *EVENTS))
_PREFIX = subjects.COMMAND_SUBJECTS.split(".", 1)[0]  # "modelops"


def subject_kind(subject: str) -> str:
    """The bounded label for a subject: its message kind, `task`, or `other`.

    `modelops.cmd.submit_job` -> `submit_job`; `modelops.evt.job.<id>.task_failed` ->
    `task_failed`; `modelops.tasks.<id>` -> `task`. Unknown kinds become `other`, so a
    stray publisher cannot create new series.
    """
    parts = subject.split(".")
    if len(parts) < 3 or parts[0] != _PREFIX:
        return "other"
    if parts[1] == "tasks":
        return "task"
    last = parts[-1]
    return last if parts[1] in ("cmd", "evt") and last in _KNOWN_KINDS else "other"


class Metrics:
    """The metric families of one process, registered in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages = Counter(
            "modelops_messages_handled",
            "Bus messages handled, by how the consumer settled them.",
            ["service", "subject_kind", "outcome"],
            registry=r,
        )
        self.failures = Counter(
            "modelops_failures",
            "Errors a service met while handling work (kind = exception class or failure kind).",
            ["service", "kind"],
            registry=r,
        )
        self.task_duration = Histogram(
            "modelops_task_duration_seconds",
            "Wall time of one simulation task, from start to stored result.",
            ["service", "outcome"],
            buckets=TASK_DURATION_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "modelops_queue_depth",
            "Messages waiting in a stream or consumer (state: pending, ack_pending, stored).",
            ["service", "stream", "consumer", "state"],
            registry=r,
        )
        self.tasks_completed = Counter(
            "modelops_tasks_completed",
            "Simulation tasks completed (cached = result reused).",
            ["service", "cached"],
            registry=r,
        )
        self.tasks_failed = Counter(
            "modelops_tasks_failed",
            "Simulation tasks failed, by failure kind.",
            ["service", "failure"],
            registry=r,
        )

    def for_service(self, service: str) -> ServiceMetrics:
        return ServiceMetrics(self, service)

    def render(self) -> bytes:
        """The registry in Prometheus text format (what `/metrics` serves)."""
        return generate_latest(self.registry)


@dataclass(frozen=True, slots=True)
class ServiceMetrics:
    """One service's view of the shared families: every method fills in its `service` label."""

    metrics: Metrics
    service: str

    def message(self, subject: str, outcome: Outcome) -> None:
        """Count one message settled as `outcome` (acked, nacked, rejected, terminated)."""
        if outcome not in _OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}; use one of {sorted(_OUTCOMES)}")
        self.metrics.messages.labels(self.service, subject_kind(subject), outcome).inc()

    def failure(self, kind: str) -> None:
        self.metrics.failures.labels(self.service, kind).inc()

    def task_finished(self, seconds: float, *, failure: str | None = None) -> None:
        """Record a task's duration and count it completed, or failed with `failure` kind."""
        outcome = "failed" if failure else "completed"
        self.metrics.task_duration.labels(self.service, outcome).observe(seconds)
        if failure:
            self.metrics.tasks_failed.labels(self.service, failure).inc()
        else:
            self.metrics.tasks_completed.labels(self.service, "false").inc()

    def task_cached(self) -> None:
        self.metrics.tasks_completed.labels(self.service, "true").inc()

    def queue_depth(self, stream: str, consumer: str, state: str, value: float) -> None:
        self.metrics.queue_depth.labels(self.service, stream, consumer, state).set(value)

    def forget_queue(self, stream: str, consumer: str) -> None:
        """Drop a finished job's consumer series so old jobs do not linger in every scrape."""
        for state in ("pending", "ack_pending", "stored"):
            with contextlib.suppress(KeyError):
                self.metrics.queue_depth.remove(self.service, stream, consumer, state)


QueueTarget = tuple[str, str | None]
"""(stream, consumer): a consumer's pending and ack-pending counts, or with consumer None the
number of messages stored in the stream (for a work queue: tasks not yet acked)."""


class QueueDepthPoller:
    """Sets `modelops_queue_depth` from JetStream every `interval_s` while it runs.

    `targets` is called on every round, so a submitter can return the consumers of the jobs it
    currently tracks. A target that disappears (job finished, consumer deleted) has its series
    removed. A failing round is logged and retried next round: metrics must never stop a service.

        async with QueueDepthPoller(js, metrics.for_service("submitter"),
                                    lambda: [(TASKS_STREAM, None)]):
            ...
    """

    def __init__(
        self,
        js: JetStreamContext,
        metrics: ServiceMetrics,
        targets: Callable[[], Iterable[QueueTarget]],
        *,
        interval_s: float = 5.0,
        timeout_s: float = 2.0,
    ) -> None:
        self._js = js
        self._metrics = metrics
        self._targets = targets
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._seen: set[QueueTarget] = set()
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0  # completed polling rounds
        self.polled = asyncio.Event()  # set after each round: lets a caller await the first one

    async def poll_once(self) -> None:
        """One round: read every target's info and set the gauges."""
        current = set(self._targets())
        for stream, consumer in sorted(current, key=lambda t: (t[0], t[1] or "")):
            await self._read(stream, consumer)
        for stream, consumer in self._seen - current:
            self._metrics.forget_queue(stream, consumer or "")
        self._seen = current
        self.rounds += 1
        self.polled.set()

    async def _read(self, stream: str, consumer: str | None) -> None:
        try:
            async with asyncio.timeout(self._timeout_s):
                if consumer is None:
                    info = await self._js.stream_info(stream)
                    self._metrics.queue_depth(stream, "", "stored", info.state.messages)
                    return
                cinfo = await self._js.consumer_info(stream, consumer)
        except nats.js.errors.NotFoundError:
            self._metrics.forget_queue(stream, consumer or "")
            return
        except (TimeoutError, nats.errors.Error) as exc:
            log.warning(
                "metrics.queue_depth_failed", stream=stream, consumer=consumer, error=repr(exc)
            )
            return
        self._metrics.queue_depth(stream, consumer, "pending", cinfo.num_pending or 0)
        self._metrics.queue_depth(stream, consumer, "ack_pending", cinfo.num_ack_pending or 0)

    async def _run(self) -> None:
        while True:
            await self.poll_once()
            await asyncio.sleep(self._interval_s)  # a poll period, not a wait for a condition

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run(), name="modelops-queue-depth")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
