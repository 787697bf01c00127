"""The per-message boundaries: decode, bind log context, call a handler, decide the ack.

Commands: a malformed or invalid command is answered with CommandRejected and acked (never
redelivered forever); a transient failure (NATS, blob store, bundle store or Kubernetes down)
is nacked with a delay and, on its last allowed delivery, rejected and terminated; anything
else is a bug: logged with its traceback, rejected and terminated.

Task events come through a plain nats-py pull loop rather than a FastStream subscriber:
measured on this machine class, FastStream's per-message path handles about 2.9k messages/s
against 35k/s for a fetch-256-and-ack loop, and runners report up to ~10k tasks/s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Literal

import nats.errors
import structlog
from nats.js import JetStreamContext

from modelops_bundle.errors import StoreError, StoreUnavailable
from modelops_contracts import (
    CancelJob,
    CommandRejected,
    InvalidMessage,
    SubmitJob,
    TaskCompleted,
    TaskFailed,
    decode_command,
    decode_event,
)
from modelops_runtime.blobstore import BlobStoreError, BlobStoreUnavailable

from .adapters.task_queue import EnqueueFailed
from .errors import CommandInvalid, LaunchError, SubmitterError
from .handlers import SubmitterDeps, on_cancel_job, on_submit_job
from .tracking import Tracking

__all__ = ["Ack", "EventLoop", "handle_command", "handle_event", "is_transient"]

log = structlog.get_logger(__name__)

Ack = Literal["ack", "nak", "term"]
NAK_DELAY_S = 2.0


def is_transient(exc: BaseException) -> bool:
    """Whether trying the same message again later may succeed."""
    if isinstance(exc, LaunchError):
        return exc.transient
    return isinstance(
        exc,
        nats.errors.Error
        | BlobStoreUnavailable
        | StoreUnavailable
        | EnqueueFailed
        | TimeoutError
        | ConnectionError,
    )


def _envelope(data: bytes) -> dict[str, str]:
    """type, id and correlation_id of a command that did not decode, as far as readable."""
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(raw, dict):
        return {}
    return {k: v for k in ("type", "id", "correlation_id") if isinstance(v := raw.get(k), str)}


def _rejected(
    data: bytes,
    cmd: SubmitJob | CancelJob | None,
    reason: str,
    *,
    field: str | None = None,
    hint: str | None = None,
    job_id: str | None = None,
) -> CommandRejected:
    env = _envelope(data) if cmd is None else {}
    return CommandRejected(
        correlation_id=(cmd.correlation_id if cmd else env.get("correlation_id")) or "uncorrelated",
        command_type=type(cmd).__struct_config__.tag if cmd else env.get("type", "unknown"),  # type: ignore[union-attr]
        command_id=cmd.id if cmd else env.get("id", ""),
        reason=reason,
        field=field,
        hint=hint,
        job_id=job_id if job_id is not None else getattr(cmd, "job_id", None),
        source="modelops-submitter",
    )


async def _heartbeat(beat: Callable[[], Awaitable[None]], every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)  # a periodic heartbeat, not a wait for a condition
        await beat()


async def handle_command(
    data: bytes,
    deps: SubmitterDeps,
    *,
    delivered: int = 1,
    max_deliver: int = 5,
    heartbeat: Callable[[], Awaitable[None]] | None = None,
    heartbeat_every_s: float = 10.0,
) -> Ack:
    """Carry out one command message; what to do with the message afterwards."""
    try:
        cmd = decode_command(data)
    except InvalidMessage as exc:
        log.warning("command.malformed", reason=exc.message, field=exc.field)
        await deps.events.publish(
            _rejected(data, None, exc.message, field=exc.field, hint=exc.hint)
        )
        return "ack"
    if not isinstance(cmd, SubmitJob | CancelJob):
        log.warning("command.not_ours", type=type(cmd).__name__)
        return "ack"  # the consumer filters them out; a stray one is dropped, not rejected
    context = {"correlation_id": cmd.correlation_id, "command": cmd.kind}
    if isinstance(cmd, CancelJob):
        context["job_id"] = cmd.job_id
    with structlog.contextvars.bound_contextvars(**context):
        beat = asyncio.create_task(_heartbeat(heartbeat, heartbeat_every_s)) if heartbeat else None
        try:
            if isinstance(cmd, SubmitJob):
                await on_submit_job(cmd, deps=deps)
            else:
                await on_cancel_job(cmd, deps=deps)
            return "ack"
        except (CommandInvalid, InvalidMessage) as exc:
            log.info("command.rejected", reason=exc.message, field=exc.field)
            await deps.events.publish(
                _rejected(
                    data,
                    cmd,
                    exc.message,
                    field=exc.field,
                    hint=exc.hint,
                    job_id=getattr(exc, "job_id", None),
                )
            )
            return "ack"
        except Exception as exc:  # the outermost per-message boundary: decide, never swallow
            if is_transient(exc) and delivered < max_deliver:
                log.warning("command.retry", error=str(exc), delivered=delivered, outcome="nacked")
                return "nak"
            if is_transient(exc) or isinstance(exc, SubmitterError | BlobStoreError | StoreError):
                reason = (
                    f"gave up after {delivered} attempts: {exc}" if is_transient(exc) else str(exc)
                )
                log.error(
                    "command.failed", error=str(exc), delivered=delivered, outcome="terminated"
                )
            else:
                reason = f"internal error: {type(exc).__name__}: {exc}"
                log.exception("command.crashed", delivered=delivered, outcome="terminated")
            await deps.events.publish(_rejected(data, cmd, reason, hint=getattr(exc, "hint", None)))
            return "term"
        finally:
            if beat is not None:
                beat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beat


async def handle_event(data: bytes, tracking: Tracking) -> Ack:
    """Fold one task event into its job's tracker."""
    try:
        event = decode_event(data)
    except InvalidMessage as exc:
        log.warning("event.malformed", reason=exc.message, outcome="terminated")
        return "term"
    if not isinstance(event, TaskCompleted | TaskFailed):
        return "ack"
    with structlog.contextvars.bound_contextvars(job_id=event.job_id, task_id=event.task_id):
        try:
            await tracking.on_event(event)
        except Exception as exc:  # the outermost per-message boundary
            if is_transient(exc) or isinstance(exc, BlobStoreError):
                log.warning("event.retry", error=str(exc), outcome="nacked")
                return "nak"
            log.exception("event.crashed", outcome="terminated")
            return "term"
    return "ack"


class EventLoop:
    """Pulls task events in batches from the tracker's durable consumer until stopped."""

    def __init__(
        self,
        js: JetStreamContext,
        tracking: Tracking,
        *,
        stream: str,
        consumer: str,
        batch: int = 256,
        idle_s: float = 0.25,
    ) -> None:
        self.js = js
        self.tracking = tracking
        self.stream = stream
        self.consumer = consumer
        self.batch = batch
        self.idle_s = idle_s  # fetch timeout: also the cadence of progress ticks when idle
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="submitter-event-loop")
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("event_loop.died", error=repr(task.exception()), exc_info=task.exception())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        sub = await self.js.pull_subscribe_bind(consumer=self.consumer, stream=self.stream)
        try:
            while not self._stop.is_set():
                try:
                    await self._once(sub)
                except Exception:  # the outermost loop: log, pause, go on (never die silently)
                    log.exception("event_loop.iteration_failed")
                    await asyncio.sleep(1.0)  # back-off before the next fetch
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

    async def _once(self, sub: JetStreamContext.PullSubscription) -> None:
        try:
            msgs = await sub.fetch(self.batch, timeout=self.idle_s)
        except (nats.errors.TimeoutError, TimeoutError):  # nats-py raises either when idle
            msgs = []
        except nats.errors.Error as exc:  # disconnected: the client reconnects by itself
            log.warning("event_loop.fetch_failed", error=str(exc))
            msgs = []
            await asyncio.sleep(self.idle_s)  # back-off while NATS reconnects
        for msg in msgs:
            outcome = await handle_event(msg.data, self.tracking)
            try:
                if outcome == "ack":
                    await msg.ack()
                elif outcome == "nak":
                    await msg.nak(delay=NAK_DELAY_S)
                else:
                    await msg.term()
            except nats.errors.Error as exc:
                log.warning("event_loop.ack_failed", error=str(exc), outcome=outcome)
        try:
            await self.tracking.tick()
        except Exception as exc:  # progress is only a report: retried at the next tick
            if is_transient(exc) or isinstance(exc, BlobStoreError):
                log.warning("event_loop.tick_failed", error=str(exc))
            else:
                log.exception("event_loop.tick_crashed")
