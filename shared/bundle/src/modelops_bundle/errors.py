"""Errors of the bundle library.

::

    BundleError
    ├── ProjectError               no project here, bad registry.yaml, bad model file
    │   ├── ModelNotFound          the model file or its class does not exist
    │   └── FilesChanged           tracked files changed since registration
    ├── UnsafePath                 a path that would escape the project or bundle
    ├── StoreError                 talking to an OCI registry or layout folder failed
    │   ├── StoreUnavailable       cannot reach it (after bounded retries)
    │   ├── StoreAuthError         credentials refused
    │   └── BundleNotFound         no such manifest / tag / blob
    └── IntegrityError             content does not match its digest
"""

from __future__ import annotations

__all__ = [
    "BundleError",
    "BundleNotFound",
    "FilesChanged",
    "IntegrityError",
    "ModelNotFound",
    "ProjectError",
    "StoreAuthError",
    "StoreError",
    "StoreUnavailable",
    "UnsafePath",
]


class BundleError(Exception):
    """Base of every bundle error. `hint` says how to fix it."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class ProjectError(BundleError):
    """The project on disk is not usable as asked (no registry, bad model file, ...)."""


class ModelNotFound(ProjectError):
    """The model file, or the class the entrypoint names, does not exist."""


class FilesChanged(ProjectError):
    """Tracked files differ from what was registered. `files` lists (path, state)."""

    def __init__(self, message: str, *, files: list[tuple[str, str]], hint: str | None = None):
        super().__init__(message, hint=hint)
        self.files = files


class UnsafePath(BundleError):
    """A path is absolute, contains '..', or resolves outside its root (e.g. via a symlink)."""


class StoreError(BundleError):
    """An OCI store operation failed."""


class StoreUnavailable(StoreError):
    """The registry (or layout folder) could not be reached after bounded retries."""


class StoreAuthError(StoreError):
    """The registry refused our credentials."""


class BundleNotFound(StoreError):
    """No manifest, tag or blob with that name in the store."""


class IntegrityError(BundleError):
    """Bytes did not hash to the digest they were fetched by: never used, never cached."""
