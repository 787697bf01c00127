"""Open the right blob store for a URI: the one place that picks a backend."""

from __future__ import annotations

import dataclasses

import structlog

from modelops_runtime.blobstore.base import BlobStore
from modelops_runtime.blobstore.filestore import FileBlobStore
from modelops_runtime.blobstore.keys import parse_blob_uri
from modelops_runtime.blobstore.settings import S3Settings

__all__ = ["open_blob_store"]

log = structlog.get_logger(__name__)


def open_blob_store(
    uri: str,
    *,
    endpoint_url: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    region: str | None = None,
    settings: S3Settings | None = None,
) -> BlobStore:
    """A store for `uri` ("s3://bucket[/prefix]" or "file:///abs/dir"); nothing connects yet.

    S3 settings: the keyword arguments win; the rest comes from `settings` when given (tune
    it with `dataclasses.replace(S3Settings.from_env(), page_size=...)`), else from the
    environment (see S3Settings.from_env). All of them are ignored for file://.
    Raises InvalidBlobUri for a malformed URI.
    """
    location = parse_blob_uri(uri)
    if location.scheme == "file":
        log.debug("blobstore.opened", uri=location.uri, backend="file")
        return FileBlobStore(location)
    # imported here so that file:// users (the embedded stack, tests) never load botocore
    from modelops_runtime.blobstore.s3store import S3BlobStore

    if settings is None:
        settings = S3Settings.from_env(
            endpoint_url=endpoint_url, access_key=access_key, secret_key=secret_key, region=region
        )
    else:
        settings = dataclasses.replace(
            settings,
            endpoint_url=endpoint_url or settings.endpoint_url,
            access_key=access_key or settings.access_key,
            secret_key=secret_key or settings.secret_key,
            region=region or settings.region,
        )
    log.debug("blobstore.opened", uri=location.uri, backend="s3", endpoint=settings.endpoint_name)
    return S3BlobStore(location, settings)
