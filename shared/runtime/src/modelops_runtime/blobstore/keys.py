"""Pure key and URI rules shared by every backend (no I/O).

A key is a relative POSIX path naming one object: `jobs/job-1/spec.json`. A store has a base
URI (`s3://bucket/prefix` or `file:///abs/dir`) and an object's full URI is `<base>/<key>`.
URIs are plain strings, never percent-encoded (as with the `aws s3` CLI), so they round-trip
exactly: `key_of(base, join_uri(base, key)) == key`.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Literal

from modelops_runtime.blobstore.errors import InvalidBlobUri, UnsafeKey

__all__ = [
    "MAX_KEY_BYTES",
    "TMP_PREFIX",
    "BlobLocation",
    "join_uri",
    "key_of",
    "parse_blob_uri",
    "validate_key",
    "validate_prefix",
]

MAX_KEY_BYTES = 1024  # the S3 limit; applied to file:// too so keys move between backends
TMP_PREFIX = ".mops-tmp-"  # names in-flight writes of the file backend; refused in keys

_URI_HINT = "use s3://bucket[/prefix] or file:///absolute/folder"
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f\\]")


@dataclass(frozen=True, slots=True)
class BlobLocation:
    """A parsed store URI. `root` is the S3 key prefix (may be "") or the absolute folder."""

    scheme: Literal["s3", "file"]
    root: str
    bucket: str | None = None

    @property
    def uri(self) -> str:
        """The canonical base URI (no trailing slash)."""
        if self.scheme == "file":
            return f"file://{self.root}"
        return f"s3://{self.bucket}/{self.root}" if self.root else f"s3://{self.bucket}"


def _check_segments(text: str, what: str) -> None:
    if _CONTROL_RE.search(text):
        raise UnsafeKey(
            f"{what} {text!r} contains a control character or a backslash",
            hint="use printable characters and '/' as the separator",
        )
    if len(text.encode("utf-8")) > MAX_KEY_BYTES:
        raise UnsafeKey(f"{what} {text[:60]!r}... is longer than {MAX_KEY_BYTES} UTF-8 bytes")
    for segment in text.split("/"):
        if segment in ("", ".", ".."):
            raise UnsafeKey(
                f"{what} {text!r} has an empty, '.' or '..' segment",
                hint="keys are relative POSIX paths like 'jobs/<job_id>/spec.json'",
            )
        if segment.startswith(TMP_PREFIX):
            raise UnsafeKey(f"{what} {text!r}: segments starting with {TMP_PREFIX!r} are reserved")


def validate_key(key: str) -> str:
    """Return `key` if it safely names one object, else raise UnsafeKey.

    Refused: empty, leading or trailing '/', empty/'.'/'..' segments, control characters,
    backslashes, over 1024 bytes, and the reserved temporary-file prefix.
    """
    if not isinstance(key, str) or not key:
        raise UnsafeKey(f"blob key {key!r} is empty or not a string")
    if key.startswith("/"):
        raise UnsafeKey(f"blob key {key!r} is absolute", hint="drop the leading '/'")
    if key.endswith("/"):
        raise UnsafeKey(f"blob key {key!r} ends with '/'", hint="a key names an object")
    _check_segments(key, "blob key")
    return key


def validate_prefix(prefix: str) -> str:
    """Return a listing prefix: "" (all), a folder ('jobs/j1/') or a partial key ('jobs/j')."""
    if not isinstance(prefix, str):
        raise UnsafeKey(f"blob prefix {prefix!r} is not a string")
    if prefix == "":
        return prefix
    if prefix.startswith("/"):
        raise UnsafeKey(f"blob prefix {prefix!r} is absolute", hint="drop the leading '/'")
    body = prefix[:-1] if prefix.endswith("/") else prefix
    _check_segments(body, "blob prefix")
    return prefix


def parse_blob_uri(uri: str) -> BlobLocation:
    """Parse a store base URI into a BlobLocation, or raise InvalidBlobUri naming what is wrong."""
    if not isinstance(uri, str) or "://" not in uri:
        raise InvalidBlobUri(f"blob store URI {uri!r} has no scheme", hint=_URI_HINT)
    scheme, rest = uri.split("://", 1)
    if scheme == "s3":
        return _parse_s3(uri, rest)
    if scheme == "file":
        return _parse_file(uri, rest)
    raise InvalidBlobUri(
        f"blob store URI {uri!r} has unsupported scheme {scheme!r}", hint=_URI_HINT
    )


def _parse_s3(uri: str, rest: str) -> BlobLocation:
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise InvalidBlobUri(
            f"blob store URI {uri!r} has an invalid bucket name {bucket!r}",
            hint="bucket names are 3-63 characters of a-z, 0-9, '.' and '-'",
        )
    prefix = prefix.rstrip("/")
    if prefix:
        try:
            validate_key(prefix)
        except UnsafeKey as exc:
            raise InvalidBlobUri(
                f"blob store URI {uri!r} has an unsafe prefix", hint=str(exc)
            ) from exc
    return BlobLocation(scheme="s3", root=prefix, bucket=bucket)


def _parse_file(uri: str, rest: str) -> BlobLocation:
    authority, slash, path = rest.partition("/")
    if authority not in ("", "localhost") or not slash:
        raise InvalidBlobUri(
            f"blob store URI {uri!r} is not an absolute file URI",
            hint="write file:///absolute/folder (three slashes)",
        )
    if _CONTROL_RE.search(path):
        raise InvalidBlobUri(f"blob store URI {uri!r} contains a control character or backslash")
    root = posixpath.normpath("/" + path)
    if root == "/":
        raise InvalidBlobUri(
            f"blob store URI {uri!r} names the filesystem root", hint="use a dedicated folder"
        )
    return BlobLocation(scheme="file", root=root)


def join_uri(base_uri: str, key: str) -> str:
    """The full URI of `key` in the store at `base_uri`."""
    return f"{base_uri}/{validate_key(key)}"


def key_of(base_uri: str, key_or_uri: str) -> str:
    """Accept a key, or a full URI inside the store at `base_uri`, and return the key."""
    if isinstance(key_or_uri, str) and "://" in key_or_uri:
        head = base_uri + "/"
        if not key_or_uri.startswith(head):
            raise InvalidBlobUri(
                f"{key_or_uri!r} is not inside the blob store {base_uri}",
                hint="open a store for that URI with open_blob_store()",
            )
        return validate_key(key_or_uri[len(head) :])
    return validate_key(key_or_uri)
