"""The S3 backend (aioboto3): AWS, MinIO, SeaweedFS or any S3-compatible endpoint.

One aioboto3 Session and one long-lived client per store, opened on first use (a client per
call would redo the connection pool and credential lookup every time). botocore errors are
translated at this edge into the BlobStoreError tree, so callers never import botocore.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, TypeVar

import aioboto3
import aiohttp
import structlog
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from modelops_runtime.blobstore._atomic import CHUNK, AtomicWriter
from modelops_runtime.blobstore.base import BlobPut, ClosingStore
from modelops_runtime.blobstore.errors import (
    BlobAccessDenied,
    BlobNotFound,
    BlobStoreError,
    BlobStoreUnavailable,
    BucketNotFound,
)
from modelops_runtime.blobstore.keys import BlobLocation, join_uri, key_of, validate_prefix
from modelops_runtime.blobstore.settings import S3Settings

__all__ = ["S3BlobStore"]

log = structlog.get_logger(__name__)

T = TypeVar("T")

_MISSING = {"NoSuchKey", "404", "NotFound"}
_DENIED = {"AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
_UNAVAILABLE_HINT = (
    "is the S3 server running and reachable? check MODELOPS_S3_ENDPOINT "
    "(the embedded stack 'modelops up' uses a file:// store instead)"
)


class S3BlobStore(ClosingStore):
    """A blob store under s3://bucket/prefix. Use it from one event loop; close() it."""

    def __init__(self, location: BlobLocation, settings: S3Settings) -> None:
        if location.scheme != "s3" or location.bucket is None:
            raise ValueError(f"S3BlobStore needs an s3:// location, got {location.uri}")
        self.uri = location.uri
        self.bucket = location.bucket
        self.settings = settings
        self._prefix = location.root
        self._session = aioboto3.Session(
            aws_access_key_id=settings.access_key,
            aws_secret_access_key=settings.secret_key,
            region_name=settings.region,
        )
        self._config = Config(
            region_name=settings.region,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            retries={"total_max_attempts": settings.max_attempts, "mode": "standard"},
            max_pool_connections=settings.max_pool_connections,
            s3={"addressing_style": "path" if settings.path_style else "auto"},
        )
        self._transfer = TransferConfig(
            multipart_threshold=settings.multipart_threshold,
            multipart_chunksize=settings.multipart_chunksize,
        )
        self._conditional_put = settings.conditional_put
        self._client: Any = None
        self._stack: AsyncExitStack | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"S3BlobStore({self.uri!r}, endpoint={self.settings.endpoint_name!r})"

    def uri_for(self, key: str) -> str:
        return join_uri(self.uri, key)

    def _locate(self, key_or_uri: str) -> tuple[str, str]:
        """(object key in the bucket, full URI) for a key or a URI of this store."""
        key = key_of(self.uri, key_or_uri)
        return (f"{self._prefix}/{key}" if self._prefix else key), self.uri_for(key)

    async def _s3(self) -> Any:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    stack = AsyncExitStack()
                    self._client = await stack.enter_async_context(
                        self._session.client(
                            "s3", endpoint_url=self.settings.endpoint_url, config=self._config
                        )
                    )
                    self._stack = stack
        return self._client

    async def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> str:
        name, uri = self._locate(key)
        extra = {"ContentType": content_type} if content_type else {}
        s3 = await self._s3()
        with self._errors(uri):
            await s3.put_object(Bucket=self.bucket, Key=name, Body=data, **extra)
        return uri

    async def put_if_absent(
        self, key: str, data: bytes, *, content_type: str | None = None
    ) -> bool:
        name, uri = self._locate(key)
        extra = {"ContentType": content_type} if content_type else {}
        if self._conditional_put:
            written = await self._put_if_none_match(name, uri, data, extra)
            if written is not None:
                return written
        # Fallback, racy by nature: two writers can both see no object, both write, and both
        # get True (last write wins). Acceptable for its one use, result keys named by
        # task_id, whose concurrent writers store equivalent results.
        if await self.exists(key):
            return False
        await self.put_bytes(key, data, content_type=content_type)
        return True

    async def _put_if_none_match(
        self, name: str, uri: str, data: bytes, extra: dict[str, str]
    ) -> bool | None:
        """Conditional put: True if written, False if present, None if the server lacks it."""
        s3 = await self._s3()
        with self._errors(uri):
            for _ in range(self.settings.max_attempts):
                try:
                    await s3.put_object(
                        Bucket=self.bucket, Key=name, Body=data, IfNoneMatch="*", **extra
                    )
                    return True
                except ClientError as exc:
                    code, status = _code(exc)
                    if status == 412 or code == "PreconditionFailed":
                        return False
                    if status == 409:
                        continue  # a concurrent conditional write was in flight: ask again
                    if status == 501 or code == "NotImplemented":
                        self._conditional_put = False  # remembered for this store's lifetime
                        log.warning(
                            "blobstore.conditional_put_unsupported",
                            endpoint=self.settings.endpoint_name,
                            fallback="head-then-put",
                        )
                        return None
                    raise
        raise BlobStoreError(
            f"put_if_absent of {uri} kept colliding with concurrent writers",
            hint="retry the operation",
        )

    async def put_batch(self, *stages: Sequence[BlobPut]) -> list[list[bool]]:
        for stage in stages:  # every key is checked before anything is written
            for put in stage:
                self._locate(put.key)
        return [await self._all([self._put_one(put) for put in stage]) for stage in stages]

    async def _put_one(self, put: BlobPut) -> bool:
        if put.if_absent:
            return await self.put_if_absent(put.key, put.data, content_type=put.content_type)
        await self.put_bytes(put.key, put.data, content_type=put.content_type)
        return True

    async def get_batch(self, keys_or_uris: Sequence[str]) -> list[bytes | None]:
        for key in keys_or_uris:
            self._locate(key)
        return await self._all([self._get_or_none(key) for key in keys_or_uris])

    async def _get_or_none(self, key_or_uri: str) -> bytes | None:
        try:
            return await self.get_bytes(key_or_uri)
        except BlobNotFound:
            return None

    async def _all(self, calls: list[Awaitable[T]]) -> list[T]:
        """Await `calls` concurrently, as many at once as the connection pool holds; once all
        have finished (none is left running), raise the first error if any failed."""
        room = asyncio.Semaphore(self.settings.max_pool_connections)

        async def bounded(call: Awaitable[T]) -> T:
            async with room:
                return await call

        results = await asyncio.gather(*(bounded(c) for c in calls), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results  # type: ignore[return-value]  # no exceptions left in it

    async def put_file(self, key: str, path: Path) -> str:
        name, uri = self._locate(key)
        path = Path(path)
        if not await asyncio.to_thread(path.is_file):
            raise FileNotFoundError(errno.ENOENT, f"no file to upload as {uri}", str(path))
        s3 = await self._s3()
        with self._errors(uri):
            # multipart above settings.multipart_threshold; a failed multipart upload is aborted
            await s3.upload_file(
                Filename=str(path), Bucket=self.bucket, Key=name, Config=self._transfer
            )
        return uri

    async def get_bytes(self, key_or_uri: str) -> bytes:
        name, uri = self._locate(key_or_uri)
        s3 = await self._s3()
        with self._errors(uri):
            response = await s3.get_object(Bucket=self.bucket, Key=name)
            body = response["Body"]  # entering it yields the raw aiohttp response: keep `body`
            async with body:
                data: bytes = await body.read()
        return data

    async def get_file(self, key_or_uri: str, dest: Path) -> None:
        name, uri = self._locate(key_or_uri)
        s3 = await self._s3()
        writer = AtomicWriter(Path(dest))
        try:
            with self._errors(uri):
                response = await s3.get_object(Bucket=self.bucket, Key=name)
                body = response["Body"]
                async with body:
                    await asyncio.to_thread(writer.open)
                    async for chunk in body.iter_chunks(CHUNK):
                        await asyncio.to_thread(writer.write, chunk)
            await asyncio.to_thread(writer.commit)
        finally:
            await asyncio.to_thread(writer.abort)

    async def exists(self, key_or_uri: str) -> bool:
        name, uri = self._locate(key_or_uri)
        s3 = await self._s3()
        try:
            with self._errors(uri):
                await s3.head_object(Bucket=self.bucket, Key=name)
        except BlobNotFound:
            return False
        return True

    async def list(self, prefix: str = "") -> AsyncIterator[str]:
        prefix = validate_prefix(prefix)
        full = f"{self._prefix}/{prefix}" if self._prefix else prefix
        strip = len(self._prefix) + 1 if self._prefix else 0
        s3 = await self._s3()
        paginator = s3.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket, Prefix=full, PaginationConfig={"PageSize": self.settings.page_size}
        )
        with self._errors(f"{self.uri}/{prefix}"):
            async for page in pages:
                for item in page.get("Contents", ()):
                    yield item["Key"][strip:]

    async def delete(self, key_or_uri: str) -> None:
        name, uri = self._locate(key_or_uri)
        s3 = await self._s3()
        with self._errors(uri):
            await s3.delete_object(Bucket=self.bucket, Key=name)

    async def close(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    @contextlib.contextmanager
    def _errors(self, uri: str) -> Iterator[None]:
        """Translate botocore/aiohttp errors raised in the block into BlobStoreError."""
        endpoint = self.settings.endpoint_name
        try:
            yield
        except ClientError as exc:
            raise self._translate(exc, uri) from exc
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise BlobAccessDenied(
                f"no usable S3 credentials to access {uri}: {exc}",
                hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a profile or role)",
            ) from exc
        except (BotoConnectionError, HTTPClientError, aiohttp.ClientError) as exc:
            raise BlobStoreUnavailable(endpoint, detail=str(exc), hint=_UNAVAILABLE_HINT) from exc
        except BotoCoreError as exc:
            raise BlobStoreError(f"S3 request for {uri} at {endpoint} failed: {exc}") from exc

    def _translate(self, exc: ClientError, uri: str) -> BlobStoreError:
        code, status = _code(exc)
        message = exc.response.get("Error", {}).get("Message", "")
        endpoint = self.settings.endpoint_name
        if code in _MISSING:
            return BlobNotFound(uri)
        if code == "NoSuchBucket":
            return BucketNotFound(self.bucket, endpoint=endpoint)
        if code in _DENIED:
            return BlobAccessDenied(
                f"S3 at {endpoint} refused access to {uri}: {code} {message}".rstrip(),
                hint=f"check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and that bucket "
                f"'{self.bucket}' exists",
            )
        if status is not None and status >= 500:
            return BlobStoreUnavailable(
                endpoint,
                detail=f"server error {status} {code} for {uri} after "
                f"{self.settings.max_attempts} attempts: {message}",
                hint="the S3 server is failing: check its logs and free space",
            )
        return BlobStoreError(f"S3 request for {uri} at {endpoint} failed: {code} {message}")


def _code(exc: ClientError) -> tuple[str, int | None]:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return str(exc.response.get("Error", {}).get("Code", "")), status
