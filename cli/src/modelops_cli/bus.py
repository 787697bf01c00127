"""Ask the services something over NATS: publish a command, await the event that answers it.

An answer is an event of one of the expected types carrying the command's `correlation_id`.
We subscribe before publishing, so an answer cannot slip past, and the command goes through
JetStream (Nats-Msg-Id = command id) so the server has stored it before we wait.

::

    BusError                   the services could not be asked or did not answer
    ├── CommandNotStored       no JetStream stream took the command (is the stack up?)
    └── NoAnswer               nothing answered within the timeout
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import nats.errors
import nats.js.errors
import structlog
from nats.aio.msg import Msg

from modelops_contracts import (
    BundleFailed,
    BundlePushed,
    Command,
    CommandRejected,
    Event,
    InvalidMessage,
    ModelRegistered,
    decode_event,
    encode,
)
from modelops_contracts.subjects import (
    BUNDLE_EVENTS,
    EVENT_SUBJECTS,
    MODEL_EVENTS,
    REJECTED_EVENTS,
    job_events_filter,
)
from modelops_runtime.nats_setup import NATS_HINT, connect

__all__ = ["BusError", "CommandNotStored", "NoAnswer", "answer_subjects", "request"]

log = structlog.get_logger(__name__)

# Where each answer type is published; job events are found by their `job_id` field.
_AREAS: dict[type, str] = {
    ModelRegistered: MODEL_EVENTS,
    BundlePushed: BUNDLE_EVENTS,
    BundleFailed: BUNDLE_EVENTS,
    CommandRejected: REJECTED_EVENTS,
}


class BusError(Exception):
    """Asking the services failed. `hint` says what to check."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class CommandNotStored(BusError):
    """The command was published but no JetStream stream stored it."""


class NoAnswer(BusError):
    """No answering event arrived in time. The command may still be acted on later."""


def answer_subjects(answers: tuple[type, ...]) -> list[str]:
    """Subject filters covering every event type in `answers` (deduplicated, sorted)."""
    subjects: set[str] = set()
    for cls in answers:
        kind = getattr(cls, "kind", "")
        if cls in _AREAS:
            subjects.add(f"{_AREAS[cls]}.{kind}")
        elif "job_id" in getattr(cls, "__struct_fields__", ()) and kind:
            subjects.add(job_events_filter().replace(".>", f".{kind}"))
        else:
            return [EVENT_SUBJECTS]  # unknown area: listen to everything, filter by decode
    return sorted(subjects)


async def request(
    nats_url: str,
    command: Command,
    *,
    answers: tuple[type, ...],
    timeout: float,  # noqa: ASYNC109 - bounds the publish and the wait, not one await
    credentials: str | None = None,
    accept: Callable[[Event], bool] | None = None,
) -> Event:
    """Publish `command` and return the first event of a type in `answers` with its
    correlation_id (and, if given, for which `accept` is true).

    Raises NatsUnavailable (cannot connect), CommandNotStored, or NoAnswer after `timeout`
    seconds. A CommandRejected is returned like any answer if it is in `answers`.
    """
    nc = await connect(
        nats_url,
        name="modelops-cli",
        credentials=credentials,
        first_connect_timeout_s=min(timeout, 5.0),
    )
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[Event] = loop.create_future()

    async def on_event(msg: Msg) -> None:
        try:
            event = decode_event(msg.data)
        except InvalidMessage:  # someone else's malformed event: not our answer
            return
        if (
            event.correlation_id == command.correlation_id
            and isinstance(event, answers)
            and (accept is None or accept(event))
            and not answered.done()
        ):
            answered.set_result(event)

    try:
        for subject in answer_subjects(answers):
            await nc.subscribe(subject, cb=on_event)
        await nc.flush()
        js = nc.jetstream()
        try:
            await js.publish(
                command.subject,
                encode(command),
                headers={"Nats-Msg-Id": command.id},
                timeout=timeout,
            )
        except nats.js.errors.NoStreamResponseError as exc:
            raise CommandNotStored(
                f"no JetStream stream on {nats_url} takes {command.subject}",
                hint=f"the services are not set up there; {NATS_HINT}",
            ) from exc
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError) as exc:
            raise CommandNotStored(
                f"JetStream on {nats_url} did not store {command.kind} ({type(exc).__name__})",
                hint=f"is JetStream enabled and the stack up? {NATS_HINT}",
            ) from exc
        log.debug("command.published", kind=command.kind, correlation_id=command.correlation_id)
        try:
            return await asyncio.wait_for(answered, timeout)
        except TimeoutError:
            raise NoAnswer(
                f"no answer to {command.kind} (correlation id {command.correlation_id}) "
                f"within {timeout:g}s",
                hint="the command is stored and will be handled once its service runs; "
                "check that the services are up ('modelops up' or the deployment)",
            ) from None
    finally:
        await nc.close()
