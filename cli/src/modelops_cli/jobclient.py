"""Talking to the services about jobs: records (jobs KV), commands, and a job's event history.

One `JobClient` holds one NATS connection for the length of a CLI command. Commands go through
`bus.request` (publish, then await the answering event by correlation id). A job's events are
read from the events stream with an ephemeral pull consumer starting at the sequence the job
record names, so `watch` replays what happened before it started and then follows live.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import msgspec
import nats
import nats.errors
import nats.js.errors
import structlog
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from modelops_contracts import (
    CancelJob,
    CommandRejected,
    Event,
    InvalidMessage,
    JobCancelled,
    JobCompleted,
    JobRecord,
    JobSubmitted,
    LaunchOptions,
    SimulationStudy,
    SubmitJob,
    TaskFailed,
    decode,
    decode_event,
    new_job_id,
)
from modelops_contracts.messages import new_message_id
from modelops_contracts.subjects import EVENTS_STREAM, KV_JOBS, job_event_subject, job_events_filter
from modelops_runtime.nats_setup import connect

from . import bus
from .config import CliConfig
from .errors import CommandRefused, UnknownJob
from .jobstate import JobView

__all__ = ["JobClient", "refused"]

log = structlog.get_logger(__name__)

_BATCH = 256
_IDLE_S = 1.0  # one fetch's wait; also how often `follow` may look at the job record
_RECORD_CHECK_S = 5.0  # while idle, how often to re-read the record (history may be gone)
# The server removes our ephemeral consumer this long after our last fetch; we never delete it
# ourselves, since the deployment's `cli` NATS user may create but not delete consumers.
_CONSUMER_IDLE_S = 10.0


def refused(event: CommandRejected) -> CommandRefused:
    """A CommandRejected as the error a person reads."""
    where = f" (field '{event.field}')" if event.field else ""
    return CommandRefused(
        f"{event.command_type} refused{where}: {event.reason}", field=event.field, hint=event.hint
    )


@dataclass
class JobClient:
    """Job records, commands and event history over one NATS connection."""

    nc: nats.NATS
    js: JetStreamContext
    url: str
    credentials: str | None = None

    @classmethod
    @asynccontextmanager
    async def open(cls, cfg: CliConfig, *, timeout_s: float = 5.0) -> AsyncIterator[JobClient]:
        """Connect to the configured NATS (or the running embedded stack's)."""
        url = cfg.require_nats_url()
        nc = await connect(
            url, name="modelops-cli", credentials=cfg.nats_creds, first_connect_timeout_s=timeout_s
        )
        try:
            yield cls(nc=nc, js=nc.jetstream(), url=url, credentials=cfg.nats_creds)
        finally:
            await nc.close()

    # ---------------------------------------------------------------- records

    async def record(self, job_id: str) -> JobRecord:
        """The job's record in the jobs KV, or UnknownJob."""
        try:
            kv = await self.js.key_value(KV_JOBS)
            entry = await kv.get(job_id)
        except (nats.js.errors.BucketNotFoundError, nats.js.errors.KeyNotFoundError) as exc:
            raise UnknownJob(job_id, where=self.url) from exc
        except nats.js.errors.NotFoundError as exc:  # the bucket's stream does not exist
            raise UnknownJob(job_id, where=self.url) from exc
        if entry.value is None:
            raise UnknownJob(job_id, where=self.url)
        try:
            return decode(entry.value, JobRecord)
        except InvalidMessage as exc:
            raise UnknownJob(job_id, where=self.url) from exc

    async def records(self) -> list[JobRecord]:
        """Every job record, newest first (undecodable entries are skipped and logged)."""
        try:
            kv = await self.js.key_value(KV_JOBS)
            keys = await kv.keys()
        except (nats.js.errors.BucketNotFoundError, nats.js.errors.NotFoundError):
            return []
        except nats.js.errors.NoKeysError:
            return []
        found: list[JobRecord] = []
        for key in keys:
            try:
                entry = await kv.get(key)
            except nats.js.errors.KeyNotFoundError:  # deleted between keys() and get()
                continue
            if entry.value is None:
                continue
            try:
                found.append(decode(entry.value, JobRecord))
            except InvalidMessage as exc:  # e.g. an idempotency entry of another shape
                log.debug("jobs.skipped_entry", key=key, error=exc.message)
        return sorted(found, key=lambda r: r.created, reverse=True)

    # ---------------------------------------------------------------- commands

    async def submit(
        self,
        study: SimulationStudy,
        bundle_ref: str,
        *,
        options: LaunchOptions,
        idempotency_key: str | None = None,
        timeout_s: float = 120.0,
    ) -> JobSubmitted:
        """Send SubmitJob and return the JobSubmitted answer; CommandRefused if rejected."""
        correlation = new_message_id()
        cmd = SubmitJob(
            correlation_id=correlation,
            source="modelops-cli",
            bundle_ref=bundle_ref,
            study=study,
            # With an idempotency key the submitter derives the job id, so a resend finds it.
            job_id=None if idempotency_key else new_job_id(),
            options=options,
            idempotency_key=idempotency_key,
        )
        answer = await bus.request(
            self.url,
            cmd,
            answers=(JobSubmitted, CommandRejected),
            timeout=timeout_s,
            credentials=self.credentials,
        )
        if isinstance(answer, CommandRejected):
            raise refused(answer)
        assert isinstance(answer, JobSubmitted)
        return answer

    async def cancel(self, job_id: str, *, reason: str, timeout_s: float = 30.0) -> JobCancelled:
        """Send CancelJob and return JobCancelled; CommandRefused if rejected."""
        cmd = CancelJob(
            correlation_id=new_message_id(), source="modelops-cli", job_id=job_id, reason=reason
        )
        answer = await bus.request(
            self.url,
            cmd,
            answers=(JobCancelled, CommandRejected),
            timeout=timeout_s,
            credentials=self.credentials,
        )
        if isinstance(answer, CommandRejected):
            raise refused(answer)
        assert isinstance(answer, JobCancelled)
        return answer

    # ---------------------------------------------------------------- history

    async def events(
        self, job_id: str, *, start_seq: int = 0, follow: bool, kind: str | None = None
    ) -> AsyncIterator[Event | None]:
        """The job's events in stream order, from `start_seq` (0: the stream's start).

        With `follow=False` it ends at the current end of the history; with `follow=True` it
        waits for more and yields None after each idle second, so callers can look around.
        """
        subject = job_event_subject(job_id, kind) if kind else job_events_filter(job_id)
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if start_seq > 0 else DeliverPolicy.ALL,
            opt_start_seq=start_seq if start_seq > 0 else None,
            ack_policy=AckPolicy.NONE,  # a reader, not a worker: nothing to acknowledge
            inactive_threshold=_CONSUMER_IDLE_S,
            mem_storage=True,
        )
        sub = await self.js.pull_subscribe(subject, stream=EVENTS_STREAM, config=config)
        try:
            if not follow and (await sub.consumer_info()).num_pending == 0:
                return
            while True:
                try:
                    msgs = await sub.fetch(_BATCH, timeout=_IDLE_S)
                except TimeoutError:  # nats-py raises asyncio's (and its own subclass of it)
                    if not follow and (await sub.consumer_info()).num_pending == 0:
                        return
                    yield None
                    continue
                for msg in msgs:
                    try:
                        yield decode_event(msg.data)
                    except InvalidMessage as exc:  # someone else's malformed event
                        log.debug("events.undecodable", subject=msg.subject, error=exc.message)
                if not follow and msgs and msgs[-1].metadata.num_pending == 0:
                    return
        finally:
            try:
                await sub.unsubscribe()
            except nats.errors.Error as exc:  # the consumer expires on its own anyway
                log.debug("events.unsubscribe_failed", job_id=job_id, error=str(exc))

    async def follow(
        self,
        job_id: str,
        *,
        on_update: Callable[[JobView], None] | None = None,
        timeout_s: float | None = None,
    ) -> JobView:
        """Fold the job's events until it is finished (or `timeout_s` passes) and return the view.

        A finished job is replayed to its end and not followed. If its history is gone (expired
        stream) the record's final counts stand in for it.
        """
        record = await self.record(job_id)
        view = JobView.from_record(record)
        if on_update:
            on_update(view)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        follow = not record.terminal
        last_check = time.monotonic()
        history = self.events(job_id, start_seq=record.events_start_seq, follow=follow)
        async with contextlib.aclosing(history):  # stop reading as soon as we break out
            async for event in history:
                if event is not None:
                    view.apply(event)
                elif time.monotonic() - last_check >= _RECORD_CHECK_S:
                    last_check = time.monotonic()
                    record = await self.record(job_id)
                    if record.terminal:
                        _finish_from_record(view, record)
                if on_update:
                    on_update(view)
                if view.finished:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
        if not view.finished and record.terminal:
            _finish_from_record(view, record)
            if on_update:
                on_update(view)
        return view

    async def finished_record(self, job_id: str) -> JobRecord:
        """The job's record, marked completed if its history already holds JobCompleted.

        The submitter emits JobCompleted and updates the record separately, so for a moment a
        reader who saw the event may find the record still running.
        """
        record = await self.record(job_id)
        if record.terminal:
            return record
        history = self.events(
            job_id, start_seq=record.events_start_seq, follow=False, kind=JobCompleted.kind
        )
        async with contextlib.aclosing(history):
            async for event in history:
                if isinstance(event, JobCompleted) and event.job_id == job_id:
                    return msgspec.structs.replace(
                        record,
                        state="completed",
                        completed=event.completed,
                        failed=event.failed,
                        n_cached=event.cached,
                        results_uri=event.results_uri or record.results_uri,
                    )
        return record

    async def failures(self, job_id: str) -> list[TaskFailed]:
        """Every final TaskFailed of the job, first per task, in the order they happened."""
        record = await self.record(job_id)
        seen: dict[str, TaskFailed] = {}
        async for event in self.events(
            job_id, start_seq=record.events_start_seq, follow=False, kind=TaskFailed.kind
        ):
            if isinstance(event, TaskFailed) and event.final and event.job_id == job_id:
                seen.setdefault(event.task_id, event)
        return list(seen.values())


def _finish_from_record(view: JobView, record: JobRecord) -> None:
    """The record is terminal but the events did not say so: trust the record."""
    view.state = record.state
    view.progress_completed = max(view.progress_completed, record.completed)
    view.progress_failed = max(view.progress_failed, record.failed)
    view.results_uri = record.results_uri or view.results_uri
    view.cancel_reason = view.cancel_reason or record.reason
