"""Connecting to NATS and declaring the JetStream streams and KV buckets of DESIGN.md.

Every service and the CLI call `ensure_jetstream` at start-up: it creates what is missing and
updates what exists with other settings, so the declarations below are the single source of
truth and a second call is a no-op. Names come from `modelops_contracts.subjects`.

::

    MessagingError (RuntimeError)
    ├── NatsUnavailable        the first connect did not succeed within its deadline
    └── JetStreamSetupError    a stream or bucket cannot be created or brought to our settings
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, Literal

import nats
import nats.errors
import nats.js.errors
import structlog
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from modelops_contracts import subjects

__all__ = [
    "COMMAND_MAX_AGE_S",
    "DUPLICATE_WINDOW_S",
    "EVENT_MAX_AGE_S",
    "NATS_HINT",
    "JetStreamSetupError",
    "MessagingError",
    "NatsUnavailable",
    "connect",
    "ensure_jetstream",
    "ensure_kv",
    "ensure_stream",
    "kv_configs",
    "stream_configs",
]

log = structlog.get_logger(__name__)

DAY_S = 24 * 3600.0
# Covers a publisher's retry loop (reconnect + republish) several times over, so a retried
# publish with the same Nats-Msg-Id is stored once; longer would only grow the server's id table.
DUPLICATE_WINDOW_S = 120.0
# Commands are acted on within seconds; a week of them is kept for audit and for replaying a
# service that was down, without growing forever.
COMMAND_MAX_AGE_S = 7 * DAY_S
# Events are the replayable history of jobs (`watch`, a restarted tracker); 30 days outlives any
# job we expect, and deployments with longer jobs raise it.
EVENT_MAX_AGE_S = 30 * DAY_S
NATS_HINT = "start it with 'modelops up' or set MODELOPS_NATS_URL"
EnsureResult = Literal["created", "updated", "unchanged"]


class MessagingError(RuntimeError):
    """Base of NATS/JetStream set-up errors. `hint` says how to fix it."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class NatsUnavailable(MessagingError):
    """No NATS server answered at `url` within the first-connect deadline."""

    def __init__(self, url: str, *, detail: str = "", hint: str = NATS_HINT) -> None:
        tail = f": {detail}" if detail else ""
        super().__init__(f"cannot connect to NATS at {url}{tail}", hint=hint)
        self.url = url


class JetStreamSetupError(MessagingError):
    """A stream or KV bucket could not be created or updated to the declared settings."""

    def __init__(self, name: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"JetStream {name}: {message}", hint=hint)
        self.name = name


# ------------------------------------------------------------------------------- declarations


def stream_configs(
    *,
    event_max_age_s: float = EVENT_MAX_AGE_S,
    command_max_age_s: float = COMMAND_MAX_AGE_S,
    replicas: int = 1,
) -> list[StreamConfig]:
    """The three streams. File storage throughout: nothing on the bus may vanish in a restart."""
    common: dict[str, Any] = {
        "storage": StorageType.FILE,
        "duplicate_window": DUPLICATE_WINDOW_S,
        "num_replicas": replicas,  # 1 on one server; 3 on a cluster that must survive a node
    }
    return [
        StreamConfig(
            name=subjects.COMMANDS_STREAM,
            description="ModelOps commands (RegisterModel, BuildBundle, SubmitJob, CancelJob)",
            subjects=[subjects.COMMAND_SUBJECTS],
            # Limits, not work-queue: each service reads commands through its own durable
            # consumer, and the log stays for audit after they are handled.
            retention=RetentionPolicy.LIMITS,
            max_age=command_max_age_s,
            discard=DiscardPolicy.OLD,
            **common,
        ),
        StreamConfig(
            name=subjects.EVENTS_STREAM,
            description="ModelOps events: the replayable history of models, bundles and jobs",
            subjects=[subjects.EVENT_SUBJECTS],
            # Limits: any number of readers (watchers, the tracker, other systems) replay it
            # from any sequence; acking never deletes an event.
            retention=RetentionPolicy.LIMITS,
            max_age=event_max_age_s,
            discard=DiscardPolicy.OLD,
            **common,
        ),
        StreamConfig(
            name=subjects.TASKS_STREAM,
            description="ModelOps tasks, one subject per job, drained by that job's runners",
            subjects=[subjects.TASK_SUBJECTS],
            # Work queue: an acked task is deleted. A job's runners share one durable pull
            # consumer (the server refuses overlapping consumers here), so each task is held by
            # one runner at a time and comes back only if that runner fails to ack it.
            retention=RetentionPolicy.WORK_QUEUE,
            # No max_age: an unfinished task must never expire silently; cancel purges the job's
            # subject instead.
            max_age=0,
            # Discard NEW: if a limit is ever set, a full queue refuses the publish (the
            # submitter sees the error) rather than dropping queued tasks.
            discard=DiscardPolicy.NEW,
            **common,
        ),
    ]


def kv_configs(*, replicas: int = 1) -> list[KeyValueConfig]:
    """The KV buckets. File storage: they hold the registry and job records."""
    return [
        # The model registry is revisioned: history keeps the last 16 registrations of a model
        # so `modelops` can show what changed (64 is the server's maximum).
        KeyValueConfig(
            bucket=subjects.KV_MODELS,
            description="ModelOps model registry (revisioned)",
            history=16,
            storage=StorageType.FILE,
            replicas=replicas,
        ),
        # Bundle index by digest: content-addressed, a value never changes, so no history.
        KeyValueConfig(
            bucket=subjects.KV_BUNDLES,
            description="ModelOps bundle index",
            history=1,
            storage=StorageType.FILE,
            replicas=replicas,
        ),
        # Job records are updated by compare-and-set on the latest revision; their history is
        # already in the events stream, so one value is enough.
        KeyValueConfig(
            bucket=subjects.KV_JOBS,
            description="ModelOps job records",
            history=1,
            storage=StorageType.FILE,
            replicas=replicas,
        ),
    ]


def _stream_view(cfg: StreamConfig) -> dict[str, Any]:
    """The settings we declare, normalized so a server's answer compares equal to our config."""
    return {
        "subjects": sorted(cfg.subjects or []),
        "retention": RetentionPolicy(cfg.retention or RetentionPolicy.LIMITS),
        "storage": StorageType(cfg.storage or StorageType.FILE),
        "discard": DiscardPolicy(cfg.discard or DiscardPolicy.OLD),
        "duplicate_window": float(cfg.duplicate_window or 0),
        "max_age": float(cfg.max_age or 0),
        "num_replicas": cfg.num_replicas or 1,
        "description": cfg.description or "",
    }


def _kv_view(stream: StreamConfig) -> dict[str, Any]:
    return {
        "history": stream.max_msgs_per_subject,
        "storage": StorageType(stream.storage or StorageType.FILE),
        "num_replicas": stream.num_replicas or 1,
        "description": stream.description or "",
    }


def _diff(want: dict[str, Any], have: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: (have.get(k), v) for k, v in want.items() if have.get(k) != v}


# ----------------------------------------------------------------------------------- JetStream


async def ensure_stream(js: JetStreamContext, want: StreamConfig) -> EnsureResult:
    """Create `want`, or update the existing stream of that name to it."""
    name = want.name or "?"
    have = await _stream_config(js, name)
    if have is None:
        try:
            await js.add_stream(want)
        except nats.js.errors.BadRequestError as exc:
            # Lost a race with another service creating it: fall through to compare and update.
            have = await _stream_config(js, name)
            if have is None:
                raise _setup_error(name, exc) from exc
        else:
            log.info("jetstream.stream_created", stream=name)
            return "created"
    changes = _diff(_stream_view(want), _stream_view(have))
    if not changes:
        return "unchanged"
    await _update(js, name, want, changes)
    return "updated"


async def ensure_kv(js: JetStreamContext, want: KeyValueConfig) -> EnsureResult:
    """Create the bucket, or bring an existing bucket's history/replicas to `want`."""
    stream = f"KV_{want.bucket}"
    have = await _stream_config(js, stream)
    if have is None:
        try:
            await js.create_key_value(want)
        except nats.js.errors.BadRequestError as exc:
            have = await _stream_config(js, stream)
            if have is None:
                raise _setup_error(stream, exc) from exc
        else:
            log.info("jetstream.kv_created", bucket=want.bucket, history=want.history)
            return "created"
    target = {
        "history": want.history,
        "storage": StorageType(want.storage or StorageType.FILE),
        "num_replicas": want.replicas,
        "description": want.description or "",
    }
    changes = _diff(target, _kv_view(have))
    if not changes:
        return "unchanged"
    # Evolve the server's config so the KV-specific settings nats-py chose stay as they are.
    updated = have.evolve(
        max_msgs_per_subject=want.history,
        storage=want.storage,
        num_replicas=want.replicas,
        description=want.description,
    )
    await _update(js, stream, updated, changes)
    return "updated"


async def ensure_jetstream(
    js: JetStreamContext,
    *,
    event_max_age_s: float = EVENT_MAX_AGE_S,
    command_max_age_s: float = COMMAND_MAX_AGE_S,
    replicas: int = 1,
) -> None:
    """Declare every stream and KV bucket; safe to call from every process at every start."""
    streams = stream_configs(
        event_max_age_s=event_max_age_s, command_max_age_s=command_max_age_s, replicas=replicas
    )
    results = {cfg.name: await ensure_stream(js, cfg) for cfg in streams}
    for kv in kv_configs(replicas=replicas):
        results[kv.bucket] = await ensure_kv(js, kv)
    log.debug("jetstream.ensured", **{str(k): v for k, v in results.items()})


async def _stream_config(js: JetStreamContext, name: str) -> StreamConfig | None:
    try:
        info = await js.stream_info(name)
    except nats.js.errors.NotFoundError:
        return None
    except (nats.js.errors.ServiceUnavailableError, nats.errors.NoRespondersError) as exc:
        raise JetStreamSetupError(
            name,
            "JetStream is not enabled on this NATS server",
            hint="run nats-server with -js (or 'modelops up')",
        ) from exc
    except nats.errors.TimeoutError as exc:
        raise JetStreamSetupError(
            name, "the JetStream API did not answer in time", hint="is the server overloaded?"
        ) from exc
    return info.config


async def _update(
    js: JetStreamContext, name: str, cfg: StreamConfig, changes: dict[str, tuple[Any, Any]]
) -> None:
    try:
        await js.update_stream(cfg)
    except nats.js.errors.APIError as exc:
        raise _setup_error(name, exc, changes) from exc
    log.info(
        "jetstream.stream_updated",
        stream=name,
        changes={k: f"{old!r} -> {new!r}" for k, (old, new) in changes.items()},
    )


def _setup_error(
    name: str, exc: nats.js.errors.APIError, changes: dict[str, tuple[Any, Any]] | None = None
) -> JetStreamSetupError:
    what = f" (changing {', '.join(sorted(changes))})" if changes else ""
    return JetStreamSetupError(
        name,
        f"the server refused our settings{what}: {exc.description or exc}",
        hint=f"some settings (retention, storage) cannot change in place: back up and delete "
        f"the stream ('nats stream rm {name}') and start again",
    )


# -------------------------------------------------------------------------------- connecting


class _ConnectionLog:
    """Connection callbacks that log; errors before the first connect are kept, not logged."""

    def __init__(self, nc: nats.NATS, url: str, name: str) -> None:
        self.nc = nc
        self.url = url
        self.name = name
        self.connected = False
        self.last_error: BaseException | None = None

    async def error_cb(self, exc: Exception) -> None:
        self.last_error = exc
        if self.connected:
            log.warning("nats.error", url=self.url, client=self.name, error=_describe(exc))

    async def disconnected_cb(self) -> None:
        if self.connected and not self.nc.is_closed:  # a close() we asked for is no news
            log.warning("nats.disconnected", url=self.url, client=self.name)

    async def reconnected_cb(self) -> None:
        log.info("nats.reconnected", url=self.url, client=self.name)


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


async def connect(
    url: str,
    *,
    name: str,
    credentials: str | None = None,
    user: str | None = None,
    password: str | None = None,
    inbox_prefix: str | None = None,
    first_connect_timeout_s: float = 5.0,
    reconnect_time_wait_s: float = 1.0,
    max_reconnect_attempts: int = -1,
    connect_timeout_s: float = 2.0,
) -> nats.NATS:
    """Connect to NATS, retrying until `first_connect_timeout_s`, then reconnecting forever.

    A service started before the server (compose, Kubernetes) waits up to the first-connect
    deadline instead of crashing at once; after that the client reconnects on its own
    (`max_reconnect_attempts=-1`) and resends buffered publishes. `name` shows in the server's
    monitoring. `credentials` is a NATS .creds file; `user`/`password` log in as one of the
    users of deploy/nats/nats-server.conf, whose permissions allow replies only on
    `_INBOX.<user>.>`, hence the per-user inbox prefix. With neither given, both are read from
    MODELOPS_NATS_USER / MODELOPS_NATS_PASSWORD when set.
    """
    user = user or os.environ.get("MODELOPS_NATS_USER") or None
    password = password or os.environ.get("MODELOPS_NATS_PASSWORD") or None
    inbox = inbox_prefix or (f"_INBOX.{user}" if user else "_INBOX")
    _check_credentials(url, credentials)
    nc = nats.NATS()
    events = _ConnectionLog(nc, url, name)
    try:
        async with asyncio.timeout(first_connect_timeout_s):
            await nc.connect(
                servers=[url],
                name=name,
                user_credentials=credentials,
                user=user,
                password=password,
                inbox_prefix=inbox,
                connect_timeout=connect_timeout_s,  # type: ignore[arg-type]
                reconnect_time_wait=reconnect_time_wait_s,  # type: ignore[arg-type]
                max_reconnect_attempts=max_reconnect_attempts,
                allow_reconnect=True,
                error_cb=events.error_cb,
                disconnected_cb=events.disconnected_cb,
                reconnected_cb=events.reconnected_cb,
            )
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        await _abandon(nc)
        detail = _describe(events.last_error or exc)
        raise NatsUnavailable(
            url, detail=f"no answer within {first_connect_timeout_s:g}s ({detail})"
        ) from exc
    events.connected = True
    log.debug("nats.connected", url=url, client=name)
    return nc


def _check_credentials(url: str, credentials: str | None) -> None:
    """Fail before connecting: nats-py would only report a missing file as a connect error."""
    if credentials is not None and not Path(credentials).is_file():
        raise NatsUnavailable(
            url,
            detail=f"credentials file {credentials} not found",
            hint="set MODELOPS_NATS_CREDS to an existing .creds file",
        )


async def _abandon(nc: nats.NATS) -> None:
    """Close a client whose first connect failed, so no reconnect task lingers."""
    try:
        await nc.close()
    except (nats.errors.Error, OSError, TimeoutError) as exc:
        log.debug("nats.close_after_failed_connect", error=str(exc))
