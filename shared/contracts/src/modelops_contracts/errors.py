"""Errors raised by the contracts package.

::

    ContractError (ValueError)
    ├── InvalidMessage        a message or value failed validation; names the field
    ├── InvalidEntrypoint     not `package.module:Class[/scenario]`
    ├── InvalidBundleRef      not `host[:port]/repo@sha256:<64 hex>`
    └── NotCanonical          a value the canonical encoding refuses (NaN, Inf, a set, ...)
"""

from __future__ import annotations

__all__ = [
    "ContractError",
    "InvalidBundleRef",
    "InvalidEntrypoint",
    "InvalidMessage",
    "NotCanonical",
]


class ContractError(ValueError):
    """Base of every contracts error. Carries an optional `hint` saying how to fix it."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class InvalidMessage(ContractError):
    """A message or domain value is malformed. `field` is the dotted path at fault, if known."""

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.field = field


class InvalidEntrypoint(InvalidMessage):
    """An entrypoint string does not follow `package.module:Class[/scenario]`."""


class InvalidBundleRef(InvalidMessage):
    """A bundle reference does not follow `host[:port]/repo@sha256:<64 hex>`."""


class NotCanonical(InvalidMessage):
    """A value cannot be canonically encoded, so it cannot be hashed into an id."""
