"""Blob store for job specs and task outputs: S3 (aioboto3) or a local folder (file://).

Typical use (inside a coroutine)::

    async with open_blob_store("s3://bucket/modelops") as store:
        uri = await store.put_bytes("jobs/job-1/spec.json", spec)
        spec = await store.get_bytes(uri)  # a key or a full URI of this store
"""

from __future__ import annotations

from modelops_runtime.blobstore.base import BlobPut, BlobStore
from modelops_runtime.blobstore.errors import (
    BlobAccessDenied,
    BlobConflict,
    BlobNotFound,
    BlobStoreError,
    BlobStoreUnavailable,
    BucketNotFound,
    InvalidBlobUri,
    UnsafeKey,
)
from modelops_runtime.blobstore.factory import open_blob_store
from modelops_runtime.blobstore.filestore import FileBlobStore
from modelops_runtime.blobstore.keys import (
    BlobLocation,
    join_uri,
    key_of,
    parse_blob_uri,
    validate_key,
    validate_prefix,
)
from modelops_runtime.blobstore.settings import S3Settings

__all__ = [
    "BlobAccessDenied",
    "BlobConflict",
    "BlobLocation",
    "BlobNotFound",
    "BlobPut",
    "BlobStore",
    "BlobStoreError",
    "BlobStoreUnavailable",
    "BucketNotFound",
    "FileBlobStore",
    "InvalidBlobUri",
    "S3Settings",
    "UnsafeKey",
    "join_uri",
    "key_of",
    "open_blob_store",
    "parse_blob_uri",
    "validate_key",
    "validate_prefix",
]
