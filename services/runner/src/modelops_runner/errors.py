"""Errors of the runner, and the exit status each one means for the runner process.

::

    RunnerError
    ├── ConfigError            exit 2: bad or missing settings, job spec, or bundle
    │   └── BundleRefused      the bundle cannot be trusted or used (digest mismatch, bad layout)
    ├── InfrastructureError    exit 1: NATS, the blob store or the bundle store is unreachable
    │   └── ReportError        an event could not be published (no PubAck)
    └── ConsumerGone           the job's consumer was deleted: the job was cancelled (exit 0)

A model's own failures are never errors here: they are outcomes (TaskFailed events).
"""

from __future__ import annotations

__all__ = [
    "EXIT_CONFIG",
    "EXIT_INFRASTRUCTURE",
    "EXIT_OK",
    "BundleRefused",
    "ConfigError",
    "ConsumerGone",
    "EnqueueStalled",
    "InfrastructureError",
    "ReportError",
    "RunnerError",
]

EXIT_OK = 0
"""The job's queue is drained, the job was cancelled, or the runner was asked to stop."""
EXIT_INFRASTRUCTURE = 1
"""The runner's own infrastructure failed (NATS, blob store, registry unreachable)."""
EXIT_CONFIG = 2
"""Configuration error: restarting cannot help (Kubernetes' podFailurePolicy fails the index)."""


class RunnerError(Exception):
    """Base of the runner's errors. `hint` says how to fix it; `str()` shows it."""

    exit_status = EXIT_INFRASTRUCTURE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class ConfigError(RunnerError):
    """A setting, the job spec or the bundle is wrong: the runner exits 2 before running a model."""

    exit_status = EXIT_CONFIG


class BundleRefused(ConfigError):
    """The bundle failed verification or cannot be laid out for import; no model code ran."""


class InfrastructureError(RunnerError):
    """Something the runner depends on is unavailable; retrying later may succeed."""

    exit_status = EXIT_INFRASTRUCTURE


class ReportError(InfrastructureError):
    """JetStream did not acknowledge a published event (timeout, no stream, disconnected)."""


class EnqueueStalled(RunnerError):
    """The queue stayed empty but the submitter never said every task was queued.

    Not an InfrastructureError (the fetch loop retries those): the runner gives up and exits 1,
    so Kubernetes retries the pod, and the submitter relaunches local runners when it is done.
    """

    exit_status = EXIT_INFRASTRUCTURE


class ConsumerGone(RunnerError):
    """The job's durable consumer no longer exists: the job was cancelled (or already purged)."""

    exit_status = EXIT_OK
