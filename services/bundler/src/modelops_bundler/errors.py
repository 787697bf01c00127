"""Errors of the bundler service.

::

    BundlerError
    ├── SettingsError      an environment variable has an unusable value
    ├── Rejected           the command cannot be carried out: answered with CommandRejected
    └── Transient          NATS/KV or the bundle store is unreachable: retry the delivery later

Rejected and Transient also subclass modelops_runtime.consumer's, which is what consume()
acts on when a handler raises them.
"""

from __future__ import annotations

from modelops_runtime import consumer

__all__ = ["BundlerError", "Rejected", "SettingsError", "Transient"]


class BundlerError(Exception):
    """Base of the bundler's errors. `hint` says how to fix it."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class SettingsError(BundlerError):
    """A MODELOPS_* variable cannot be used as the bundler's setting."""


class Rejected(BundlerError, consumer.Rejected):
    """A command is invalid; `field` names the part at fault, as CommandRejected reports it."""

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.field = field


class Transient(BundlerError, consumer.Transient):
    """A failure that may pass (store or KV unreachable): nak and retry later."""
