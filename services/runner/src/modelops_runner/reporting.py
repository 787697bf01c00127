"""Task events: building TaskCompleted / TaskFailed (pure) and publishing them through JetStream.

Event ids are `<job_id>:<task_id>:<kind>:<attempt>` and travel as `Nats-Msg-Id`, so a
retried publish is stored once. The job id is part of the id because results (and so task
ids) are shared between jobs: two jobs running the same task within the duplicate window
must each get their event. A TaskCompleted rebuilt from a stored record of the same job
reuses the attempt and time recorded there, so a redelivered task that was already finished
republishes the very same event, which JetStream deduplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Sequence
from typing import Protocol

import nats
import nats.errors
import structlog
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

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

_NO_RESPONDERS_STATUS = "503"

EVENT_TAIL_CHARS = 8 * 1024
"""Traceback and stderr tails kept in a TaskFailed: events are kept for 30 days."""


class EventPublisher(Protocol):
    """Publishes events and returns once JetStream has stored them."""

    async def publish(self, event: Event) -> None:
        """Raises ReportError if JetStream did not store `event`."""
        ...

    async def publish_many(self, events: Sequence[Event]) -> list[ReportError | None]:
        """Per event, in order: None once stored, else the ReportError."""
        ...


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
    """Publishes events on their subjects with Nats-Msg-Id and waits for each PubAck.

    Concurrent callers pipeline naturally: each awaits only its own PubAck. All publishes
    share one reply subscription (`<inbox>.<n>`) and a sweep that fails the PubAcks not
    back within the timeout, so a publish costs a future and a dict entry; nats-py's
    js.publish adds a random token, a wait_for timer and a PubAck dataclass to every call,
    which the runner pays once per task.
    """

    def __init__(self, nc: nats.NATS, *, timeout_s: float = 10.0) -> None:
        self._nc = nc
        self._timeout_s = timeout_s
        self._prefix = ""
        self._sub: Subscription | None = None
        self._waiting: dict[str, tuple[asyncio.Future[None], float]] = {}
        self._tokens = itertools.count()
        self._sweeper: asyncio.Task[None] | None = None

    async def publish(self, event: Event) -> None:
        """Return once JetStream has stored `event`; ReportError if it did not in time."""
        (problem,) = await self.publish_many([event])
        if problem is not None:
            raise problem

    async def publish_many(self, events: Sequence[Event]) -> list[ReportError | None]:
        """Publish `events` back to back, then wait for all their PubAcks at once.

        Per event, in order: None once JetStream has stored it, or the ReportError saying
        why not. One wait for the lot, not one per event: a stored batch of tasks reports
        in one event-loop turn or two.
        """
        if not events:
            return []
        if self._sub is None:
            await self._subscribe()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        problems: list[ReportError | None] = [None] * len(events)
        sent: list[tuple[int, str, asyncio.Future[None]]] = []
        try:
            for i, event in enumerate(events):
                token = str(next(self._tokens))
                future: asyncio.Future[None] = loop.create_future()
                self._waiting[token] = (future, deadline)
                try:
                    await self._nc.publish(
                        event.subject,
                        encode(event),
                        reply=self._prefix + token,
                        headers={"Nats-Msg-Id": event.id},
                    )
                except nats.errors.Error as exc:
                    self._waiting.pop(token, None)
                    problems[i] = _report_error(event, exc)
                    continue
                sent.append((i, token, future))
            if not sent:
                return problems
            if self._sweeper is None:
                self._sweeper = asyncio.create_task(self._sweep(), name="pubacks-sweeper")
            await asyncio.wait([future for _, _, future in sent])
        finally:
            for _, token, _ in sent:
                self._waiting.pop(token, None)
        for i, _, future in sent:
            exc = future.exception()
            if exc is not None:
                problems[i] = _report_error(events[i], exc)
        return problems

    async def close(self) -> None:
        """Stop the sweep and the reply subscription; waiting publishes fail."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for future, _ in self._waiting.values():
            if not future.done():
                future.set_exception(ReportError("the event publisher was closed"))
        if self._sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._sub.unsubscribe()
            self._sub = None

    async def _subscribe(self) -> None:
        prefix = self._nc.new_inbox() + "."  # under the connection's inbox prefix (permissions)
        try:
            sub = await self._nc.subscribe(prefix + "*", cb=self._on_reply)
        except nats.errors.Error as exc:
            raise ReportError(
                f"cannot subscribe to PubAcks on {prefix}*: {exc!r}",
                hint="may this NATS user subscribe to its inbox prefix?",
            ) from exc
        if self._sub is None:
            self._prefix, self._sub = prefix, sub
        else:  # another publish subscribed meanwhile
            await sub.unsubscribe()

    async def _on_reply(self, msg: Msg) -> None:
        entry = self._waiting.get(msg.subject[len(self._prefix) :])
        if entry is None or entry[0].done():
            return  # late: its publish already timed out
        future = entry[0]
        problem = _puback_problem(msg)
        if problem:
            future.set_exception(ReportError(problem))
        else:
            future.set_result(None)

    async def _sweep(self) -> None:
        """Fail PubAcks overdue by the timeout; ends when none is awaited."""
        try:
            while self._waiting:
                await asyncio.sleep(min(1.0, self._timeout_s))
                now = asyncio.get_running_loop().time()
                for future, deadline in list(self._waiting.values()):
                    if deadline <= now and not future.done():
                        future.set_exception(ReportError(f"no PubAck within {self._timeout_s:g} s"))
        finally:
            if self._sweeper is asyncio.current_task():
                self._sweeper = None


def _puback_problem(msg: Msg) -> str:
    """Why a PubAck reply says the event was not stored ("" when it was). Pure."""
    if msg.headers and msg.headers.get("Status") == _NO_RESPONDERS_STATUS:
        return "no stream takes this subject (no responders)"
    if b'"error"' not in msg.data:
        return ""
    try:
        error = json.loads(msg.data).get("error") or {}
    except ValueError:
        return f"unreadable PubAck {msg.data[:200]!r}"
    return f"JetStream error {error.get('code', '?')}: {error.get('description', error)}"


def _report_error(event: Event, exc: BaseException) -> ReportError:
    return ReportError(
        f"JetStream did not store {type(event).__name__} {event.id}: {type(exc).__name__}: {exc}",
        hint="is the MODELOPS_EVENTS stream there and NATS reachable?",
    )
