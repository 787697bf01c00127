"""Errors of the submitter.

::

    SubmitterError
    ├── ConfigError       the submitter's own settings are unusable (fails at start-up)
    ├── CommandInvalid    a command cannot be carried out as asked: answered by CommandRejected
    ├── LaunchError       runners could not be started or stopped
    └── ResultsError      a results table could not be written

Errors of the libraries below (blob store, bundle store, NATS) are not wrapped: the app tells
transient ones (a server down) from permanent ones by their own types.
"""

from __future__ import annotations

__all__ = ["CommandInvalid", "ConfigError", "LaunchError", "ResultsError", "SubmitterError"]


class SubmitterError(Exception):
    """Base of every submitter error. `hint` says how to fix it."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class ConfigError(SubmitterError):
    """A setting (environment variable) is missing or malformed."""


class CommandInvalid(SubmitterError):
    """The command names something that does not exist or does not fit; `field` is the part."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        hint: str | None = None,
        job_id: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.field = field
        self.job_id = job_id


class LaunchError(SubmitterError):
    """A launcher could not start (or stop) a job's runners.

    `transient` is True when trying again later may succeed (the API server is down or
    overloaded), False when the request itself was refused (an invalid manifest, no rights).
    """

    def __init__(self, message: str, *, hint: str | None = None, transient: bool = False) -> None:
        super().__init__(message, hint=hint)
        self.transient = transient


class ResultsError(SubmitterError):
    """A job's results table could not be assembled or written."""
