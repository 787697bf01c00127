"""Errors of the blob store.

::

    BlobStoreError
    ├── InvalidBlobUri         (also ValueError) malformed, unknown scheme, or another store's
    ├── UnsafeKey              (also ValueError) absolute, '..', empty segment, control character
    ├── BlobNotFound           no object at that URI (`.uri`)
    ├── BucketNotFound         the S3 bucket does not exist (`.bucket`)
    ├── BlobConflict           file:// only: a key collides with a folder of other keys
    ├── BlobAccessDenied       credentials missing or refused
    └── BlobStoreUnavailable   the endpoint cannot be reached after bounded retries (`.endpoint`)

Every error carries an optional `hint` saying how to fix it; `str()` shows it.
"""

from __future__ import annotations

__all__ = [
    "BlobAccessDenied",
    "BlobConflict",
    "BlobNotFound",
    "BlobStoreError",
    "BlobStoreUnavailable",
    "BucketNotFound",
    "InvalidBlobUri",
    "UnsafeKey",
]


class BlobStoreError(Exception):
    """Base of every blob store error. `hint` says how to fix it."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class InvalidBlobUri(BlobStoreError, ValueError):
    """A store URI is malformed, has an unknown scheme, or names another store than this one."""


class UnsafeKey(BlobStoreError, ValueError):
    """A key is not a safe relative POSIX key (absolute, '..', empty segment, control char...)."""


class BlobNotFound(BlobStoreError):
    """No object at `uri`. Callers that probe for optional objects should use `exists()`."""

    def __init__(self, uri: str, *, hint: str | None = None) -> None:
        super().__init__(f"no blob at {uri}", hint=hint)
        self.uri = uri


class BucketNotFound(BlobStoreError):
    """The S3 bucket the store URI names does not exist: a configuration error, not a miss."""

    def __init__(self, bucket: str, *, endpoint: str, hint: str | None = None) -> None:
        super().__init__(
            f"S3 bucket '{bucket}' does not exist at {endpoint}",
            hint=hint or f"create it (e.g. 'aws s3 mb s3://{bucket}') or fix the store URI",
        )
        self.bucket = bucket
        self.endpoint = endpoint


class BlobConflict(BlobStoreError):
    """file:// only: key 'a' and key 'a/b' cannot both exist, as a path is a file or a folder."""


class BlobAccessDenied(BlobStoreError):
    """Credentials are missing or the server refused them for this bucket or key."""


class BlobStoreUnavailable(BlobStoreError):
    """The store's endpoint could not be reached after bounded retries."""

    def __init__(self, endpoint: str, *, detail: str, hint: str | None = None) -> None:
        super().__init__(f"cannot reach the blob store at {endpoint}: {detail}", hint=hint)
        self.endpoint = endpoint
