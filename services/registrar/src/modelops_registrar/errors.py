"""Errors of the registrar service.

::

    RegistrarError
    ├── SettingsError      an environment variable has an unusable value
    ├── Rejected           the command cannot be carried out: answered with CommandRejected
    ├── RegistryConflict   the project's registry moved on under us (compare-and-set lost)
    └── Transient          the KV store is unreachable or contended: retry the delivery later

Rejected and Transient also subclass modelops_runtime.consumer's, which is what consume()
acts on when a handler raises them.
"""

from __future__ import annotations

from modelops_runtime import consumer

__all__ = ["RegistrarError", "RegistryConflict", "Rejected", "SettingsError", "Transient"]


class RegistrarError(Exception):
    """Base of the registrar's errors. `hint` says how to fix it."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class SettingsError(RegistrarError):
    """A MODELOPS_* variable cannot be used as the registrar's setting."""


class Rejected(RegistrarError, consumer.Rejected):
    """A command is invalid or refers to a state it cannot be applied to. `field` names the
    part of the command at fault (dotted path), as CommandRejected reports it."""

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.field = field


class RegistryConflict(RegistrarError):
    """Another writer changed the project's registry since we read it (revision mismatch)."""


class Transient(RegistrarError, consumer.Transient):
    """A failure that may pass (KV unreachable, too much contention): nak and retry later."""
