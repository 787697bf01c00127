"""One delivery, start to finish: decode, handle, publish the answer, settle the message.

Shared by the services that consume commands (registrar, bundler): each supplies its handler,
the command types it accepts and its redelivery policy; how a delivery settles is the same.

How each outcome settles the JetStream message, and why:

- handled, or answered with CommandRejected (bad JSON, invalid command, refused): publish,
  then ack. A bad command never gets better, so it must not be redelivered.
- Transient (KV unreachable, too much contention) or the answer could not be published: nak
  with a delay, so the server redelivers later; on the last allowed delivery answer with
  CommandRejected and ack instead, so the sender hears back and nothing loops.
- anything else is a bug: log the traceback, try to answer, and terminate the message.

Events (`consume_event`) are never rejected: a malformed one is logged and terminated, and
one the handler cannot act on after the last delivery is logged and dropped.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import nats.errors
import structlog

from modelops_contracts import (
    Command,
    CommandRejected,
    Event,
    InvalidMessage,
    decode_command,
    decode_event,
)
from modelops_contracts.messages import new_message_id

__all__ = [
    "Delivery",
    "EventHandler",
    "Handler",
    "Publish",
    "Redelivery",
    "Rejected",
    "Transient",
    "consume",
    "consume_event",
    "rejection",
]

log = structlog.get_logger(__name__)

Publish = Callable[[Sequence[Event]], Awaitable[None]]
Handler = Callable[[Command], Awaitable[Sequence[Event]]]
EventHandler = Callable[[Event], Awaitable[Sequence[Event]]]

# Publishing the answer failed: the bus itself is in trouble, so retry the whole delivery.
_PUBLISH_ERRORS = (nats.errors.Error, OSError, TimeoutError)


class Rejected(Exception):
    """A handler's verdict that the command cannot be carried out: answered with
    CommandRejected, never retried. `field` names the part at fault (dotted path).

    A service's own Rejected subclasses this next to its error base, so its handlers raise
    service errors while consume() recognises them.
    """

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.hint = hint


class Transient(Exception):
    """A failure that may pass (a store or KV unreachable): nak and retry the delivery later.

    Services subclass it as they do Rejected.
    """

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class Redelivery:
    """How patient to be with transient failures (from the service's settings)."""

    max_deliver: int
    nak_delay_s: float


class Delivery(Protocol):
    """One delivered message: its bytes, where it came from, and how to settle it."""

    data: bytes
    subject: str
    headers: dict[str, str] | None
    attempt: int  # 1 on first delivery (JetStream's num_delivered)

    async def ack(self) -> None: ...

    async def nack(self, delay: float | None = None) -> None:
        """Ask for redelivery after `delay` seconds."""
        ...

    async def reject(self) -> None:
        """Terminate: never redeliver."""
        ...


def _envelope(data: bytes, headers: dict[str, str] | None) -> tuple[str, str, str]:
    """(type, id, correlation_id) of a message that did not decode, as far as can be told."""
    fields: dict[str, Any] = {}
    try:
        parsed = json.loads(data)
        if isinstance(parsed, dict):
            fields = parsed
    except (ValueError, RecursionError):  # not JSON at all: nothing to recover
        pass

    def text(key: str) -> str | None:
        value = fields.get(key)
        return value if isinstance(value, str) and value else None

    # With no id at all, a fresh one: a fixed placeholder would make JetStream drop the next
    # such rejection as a duplicate.
    msg_id = text("id") or (headers or {}).get("Nats-Msg-Id") or new_message_id()
    return text("type") or "unknown", msg_id, text("correlation_id") or msg_id


def rejection(
    source: str,
    *,
    command_type: str,
    command_id: str,
    correlation_id: str,
    reason: str,
    field: str | None = None,
    hint: str | None = None,
) -> CommandRejected:
    """The CommandRejected answering a command; its id derives from the command's, so a
    redelivered command's answer is deduplicated by JetStream."""
    return CommandRejected(
        id=f"{command_id}.rejected",
        correlation_id=correlation_id,
        source=source,
        command_type=command_type,
        command_id=command_id,
        reason=reason,
        field=field,
        hint=hint,
    )


def _reject_command(source: str, cmd: Command, reason: str, **kw: Any) -> CommandRejected:
    tag = type(cmd).__struct_config__.tag
    return rejection(
        source,
        command_type=str(tag),
        command_id=cmd.id,
        correlation_id=cmd.correlation_id,
        reason=reason,
        **kw,
    )


async def _answer(
    delivery: Delivery, events: Sequence[Event], publish: Publish, policy: Redelivery
) -> str:
    """Publish the answer then ack; nak if publishing failed. Returns the outcome."""
    try:
        await publish(events)
    except _PUBLISH_ERRORS as exc:
        log.warning(
            "command.publish_failed", error=f"{type(exc).__name__}: {exc}", outcome="nacked"
        )
        await delivery.nack(delay=policy.nak_delay_s)
        return "nacked"
    await delivery.ack()
    return "acked"


async def consume(
    delivery: Delivery,
    *,
    accepts: tuple[type[Command], ...],
    handle: Handler,
    publish: Publish,
    policy: Redelivery,
    source: str,
) -> str:
    """Process one delivery of a command; returns "acked", "nacked" or "terminated"."""
    attempt = delivery.attempt
    try:
        cmd = decode_command(delivery.data)
        if not isinstance(cmd, accepts):
            raise InvalidMessage(
                f"{type(cmd).__name__} sent to {delivery.subject}, which takes "
                + " or ".join(c.__name__ for c in accepts),
                field="type",
                hint=f"publish it to {cmd.subject}",
            )
    except InvalidMessage as exc:
        kind, cmd_id, corr = _envelope(delivery.data, delivery.headers)
        log.warning(
            "command.invalid", subject=delivery.subject, reason=exc.message, field=exc.field
        )
        answer = rejection(
            source,
            command_type=kind,
            command_id=cmd_id,
            correlation_id=corr,
            reason=exc.message,
            field=exc.field,
            hint=exc.hint,
        )
        return await _answer(delivery, [answer], publish, policy)

    with structlog.contextvars.bound_contextvars(
        correlation_id=cmd.correlation_id, command_id=cmd.id, command=cmd.kind
    ):
        try:
            events: Sequence[Event] = await handle(cmd)
        except Rejected as exc:
            log.info("command.rejected", reason=exc.message, field=exc.field)
            events = [_reject_command(source, cmd, exc.message, field=exc.field, hint=exc.hint)]
        except InvalidMessage as exc:  # a contract check the handler ran (e.g. a Registry)
            log.info("command.rejected", reason=exc.message, field=exc.field)
            events = [_reject_command(source, cmd, exc.message, field=exc.field, hint=exc.hint)]
        except Transient as exc:
            if attempt < policy.max_deliver:
                log.warning("command.retry", error=exc.message, attempt=attempt, outcome="nacked")
                await delivery.nack(delay=policy.nak_delay_s)
                return "nacked"
            log.error("command.gave_up", error=exc.message, attempt=attempt)
            events = [
                _reject_command(
                    source,
                    cmd,
                    f"gave up after {attempt} attempts: {exc.message}",
                    hint=exc.hint or "retry once the service's dependencies are back",
                )
            ]
        except Exception as exc:  # outermost per-message boundary: a bug, not the sender's fault
            log.exception("command.crashed", outcome="terminated")
            events = [_reject_command(source, cmd, f"internal error: {type(exc).__name__}: {exc}")]
            try:
                await publish(events)
            except _PUBLISH_ERRORS:
                log.warning("command.publish_failed", outcome="terminated")
            await delivery.reject()
            return "terminated"
        return await _answer(delivery, events, publish, policy)


async def consume_event(
    delivery: Delivery,
    *,
    accepts: tuple[type[Event], ...],
    handle: EventHandler,
    publish: Publish,
    policy: Redelivery,
) -> str:
    """Process one delivery of an event; returns "acked", "nacked" or "terminated"."""
    try:
        event = decode_event(delivery.data)
    except InvalidMessage as exc:
        log.warning(
            "event.invalid", subject=delivery.subject, reason=exc.message, outcome="terminated"
        )
        await delivery.reject()
        return "terminated"
    if not isinstance(event, accepts):
        log.warning(
            "event.unexpected", subject=delivery.subject, kind=event.kind, outcome="terminated"
        )
        await delivery.reject()
        return "terminated"
    with structlog.contextvars.bound_contextvars(
        correlation_id=event.correlation_id, event_id=event.id, event_kind=event.kind
    ):
        try:
            events = await handle(event)
        except Transient as exc:
            if delivery.attempt < policy.max_deliver:
                log.warning(
                    "event.retry", error=exc.message, attempt=delivery.attempt, outcome="nacked"
                )
                await delivery.nack(delay=policy.nak_delay_s)
                return "nacked"
            log.error(
                "event.gave_up", error=exc.message, attempt=delivery.attempt, outcome="terminated"
            )
            await delivery.reject()
            return "terminated"
        except Exception:  # outermost per-message boundary: a bug; never redeliver it forever
            log.exception("event.crashed", outcome="terminated")
            await delivery.reject()
            return "terminated"
        return await _answer(delivery, events, publish, policy)
