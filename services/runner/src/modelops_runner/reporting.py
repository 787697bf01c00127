"""Task events: building TaskCompleted / TaskFailed (pure) and publishing them through JetStream.

Event ids are `<job_id>:<task_id>:<kind>:<attempt>` and travel as `Nats-Msg-Id`, so a
retried publish is stored once. The job id is part of the id because results (and so task
ids) are shared between jobs: two jobs running the same task within the duplicate window
must each get their event. A TaskCompleted rebuilt from a stored `_done.json` of the same job
reuses the attempt and time recorded there, so a redelivered task that was already finished
republishes the very same event, which JetStream deduplicates.
"""

from __future__ import annotations

from typing import Protocol

import nats.errors
import structlog
from nats.js import JetStreamContext

from modelops_contracts import TaskCompleted, TaskFailed, encode
from modelops_contracts.messages import Event

from .errors import ReportError
from .pool import TaskFailure
from .results import ResultRecord

__all__ = [
    "EVENT_TAIL_CHARS",
    "EventPublisher",
    "JetStreamPublisher",
    "completed_event",
    "event_id",
    "failed_event",
]

log = structlog.get_logger(__name__)

EVENT_TAIL_CHARS = 8 * 1024
"""Traceback and stderr tails kept in a TaskFailed: events are kept for 30 days."""


class EventPublisher(Protocol):
    """Publishes one event and returns once JetStream has stored it (or raises ReportError)."""

    async def publish(self, event: Event) -> None: ...


def event_id(job_id: str, task_id: str, kind: str, attempt: int) -> str:
    return f"{job_id}:{task_id}:{kind}:{attempt}"


def _tail(text: str) -> str:
    return text[-EVENT_TAIL_CHARS:]


def completed_event(
    record: ResultRecord,
    *,
    job_id: str,
    correlation_id: str,
    attempt: int,
    runner_id: str,
) -> TaskCompleted:
    """TaskCompleted for a stored result; pure.

    A record this job stored is reported as that run reported it (same id, not cached); a
    record from another job is a cache hit of this delivery.
    """
    own = record.job_id == job_id
    kind = TaskCompleted.kind
    fields = {
        "id": event_id(job_id, record.task_id, kind, record.attempt if own else attempt),
        "correlation_id": (record.correlation_id if own else "") or correlation_id,
        "source": f"modelops-runner/{runner_id}",
        "job_id": job_id,
        "task_id": record.task_id,
        "attempt": record.attempt if own else attempt,
        "outputs": record.outputs,
        "metrics": record.metrics,
        "runner_id": record.runner_id if own else runner_id,
        "cached": not own,
    }
    if own and record.time:
        fields["time"] = record.time
    return TaskCompleted(**fields)


def failed_event(
    failure: TaskFailure,
    *,
    job_id: str,
    correlation_id: str,
    attempt: int,
    runner_id: str,
    final: bool = True,
) -> TaskFailed:
    """TaskFailed from a pool failure (or one the runner made up for infrastructure); pure."""
    return TaskFailed(
        id=event_id(job_id, failure.task_id, TaskFailed.kind, attempt),
        correlation_id=correlation_id,
        source=f"modelops-runner/{runner_id}",
        job_id=job_id,
        task_id=failure.task_id,
        failure=failure.kind,  # type: ignore[arg-type]  # the pool only makes TaskFailureKinds
        message=failure.message,
        attempt=attempt,
        final=final,
        error_type=failure.error_type,
        traceback_tail=_tail(failure.traceback_tail),
        stderr_tail=_tail(failure.stderr_tail),
        exit_code=failure.exit_code,
        signal=failure.signal,
        runner_id=runner_id,
    )


class JetStreamPublisher:
    """Publishes events on their subjects with Nats-Msg-Id and waits for the PubAck.

    Concurrent callers pipeline naturally: each awaits only its own PubAck.
    """

    def __init__(self, js: JetStreamContext, *, timeout_s: float = 10.0) -> None:
        self._js = js
        self._timeout_s = timeout_s

    async def publish(self, event: Event) -> None:
        try:
            await self._js.publish(
                event.subject,
                encode(event),
                timeout=self._timeout_s,
                headers={"Nats-Msg-Id": event.id},
            )
        except (nats.errors.Error, TimeoutError) as exc:  # nats.js errors derive from it
            raise ReportError(
                f"JetStream did not store {type(event).__name__} {event.id}: "
                f"{type(exc).__name__}: {exc}",
                hint="is the MODELOPS_EVENTS stream there and NATS reachable?",
            ) from exc
