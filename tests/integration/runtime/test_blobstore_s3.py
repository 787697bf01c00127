"""The blob store contract on both backends (file:// and a real SeaweedFS S3), plus S3 specifics.

The S3 cases use the session's `s3_server` and a fresh `s3_bucket` per test (tests/support);
the file:// cases run the very same test bodies against a temporary folder.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aioboto3
import pytest

from modelops_runtime.blobstore import (
    BlobAccessDenied,
    BlobNotFound,
    BlobPut,
    BlobStore,
    BlobStoreUnavailable,
    BucketNotFound,
    InvalidBlobUri,
    S3Settings,
    UnsafeKey,
    open_blob_store,
)
from modelops_runtime.processes import free_port
from tests.support.servers import SeaweedS3

MiB = 1024 * 1024
# small parts so a 11 MiB file takes the multipart path (S3's minimum part size is 5 MiB), and
# small listing pages so a few hundred keys cross several page boundaries
TUNED = S3Settings(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, page_size=100)


def _s3_store(server: SeaweedS3, uri: str, **tuning: object) -> BlobStore:
    return open_blob_store(
        uri,
        endpoint_url=server.endpoint_url,
        access_key=server.access_key,
        secret_key=server.secret_key,
        settings=dataclasses.replace(TUNED, **tuning),  # type: ignore[arg-type]
    )


@pytest.fixture(params=["file", pytest.param("s3", marks=pytest.mark.integration)])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "file":
        return f"file://{tmp_path}/blobs"
    return f"s3://{request.getfixturevalue('s3_bucket')}/modelops"


@pytest.fixture
async def store(request: pytest.FixtureRequest, store_uri: str) -> AsyncIterator[BlobStore]:
    if store_uri.startswith("s3://"):
        blob_store = _s3_store(request.getfixturevalue("s3_server"), store_uri)
    else:
        blob_store = open_blob_store(store_uri)
    async with blob_store:
        yield blob_store


# -- the contract, on both backends ------------------------------------------------------------


async def test_round_trip_by_key_and_by_uri(store: BlobStore, tmp_path: Path) -> None:
    uri = await store.put_bytes("jobs/j1/spec.json", b'{"a":1}', content_type="application/json")
    assert uri == f"{store.uri}/jobs/j1/spec.json" == store.uri_for("jobs/j1/spec.json")
    assert await store.get_bytes(uri) == await store.get_bytes("jobs/j1/spec.json") == b'{"a":1}'
    assert await store.exists(uri) and not await store.exists("jobs/j1/other.json")
    dest = tmp_path / "fetched" / "spec.json"
    await store.get_file(uri, dest)
    assert dest.read_bytes() == b'{"a":1}'
    await store.put_bytes("jobs/j1/spec.json", b"v2")  # last write wins
    await store.get_file("jobs/j1/spec.json", dest)  # replaces an existing dest atomically
    assert dest.read_bytes() == b"v2"
    await store.delete(uri)
    assert not await store.exists(uri)
    await store.delete(uri)  # idempotent


async def test_empty_object_round_trips(store: BlobStore) -> None:
    await store.put_bytes("empty", b"")
    assert await store.exists("empty") and await store.get_bytes("empty") == b""


async def test_missing_key_raises_blob_not_found(store: BlobStore, tmp_path: Path) -> None:
    with pytest.raises(BlobNotFound) as info:
        await store.get_bytes("jobs/none/spec.json")
    assert info.value.uri == store.uri_for("jobs/none/spec.json")
    dest = tmp_path / "never.bin"
    with pytest.raises(BlobNotFound):
        await store.get_file("jobs/none/spec.json", dest)
    assert not dest.exists() and set(os.listdir(tmp_path)) <= {"blobs"}  # no temporary file


async def test_large_file_streams_both_ways(store: BlobStore, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    payload = os.urandom(11 * MiB)  # above TUNED.multipart_threshold: 3 parts on S3
    source.write_bytes(payload)
    uri = await store.put_file("outputs/t1/big.bin", source)
    dest = tmp_path / "back.bin"
    await store.get_file(uri, dest)
    assert dest.read_bytes() == payload
    with pytest.raises(FileNotFoundError):
        await store.put_file("outputs/t2/big.bin", tmp_path / "absent.bin")


async def test_list_pages_through_many_keys(store: BlobStore) -> None:
    keys = [f"outputs/{i:05d}.parquet" for i in range(350)]
    limit = asyncio.Semaphore(32)

    async def put(key: str) -> None:
        async with limit:
            await store.put_bytes(key, b"x")

    started = time.monotonic()
    await asyncio.gather(*(put(key) for key in keys), store.put_bytes("other/k", b"y"))
    listed = [key async for key in store.list("outputs/")]
    assert sorted(listed) == keys  # 4 pages of at most TUNED.page_size keys on S3
    assert len(await _listed(store)) == 351
    assert time.monotonic() - started < 30  # typically < 1 s; a hang would be a bug


async def _listed(store: BlobStore, prefix: str = "") -> list[str]:
    """Sorted: the order across folders differs between backends (see BlobStore.list)."""
    return sorted([key async for key in store.list(prefix)])


async def test_list_prefix_is_a_string_prefix(store: BlobStore) -> None:
    keys = ["jobs/j2/spec.json", "jobs/j1/spec.json", "jobs/j10/a", "jobs-x/k", "jobsx", "top"]
    await asyncio.gather(*(store.put_bytes(key, b"x") for key in keys))
    assert await _listed(store) == sorted(keys)
    assert await _listed(store, "jobs/j1") == ["jobs/j1/spec.json", "jobs/j10/a"]
    assert await _listed(store, "jobs/") == sorted(k for k in keys if k.startswith("jobs/"))
    assert await _listed(store, "jobs") == sorted(k for k in keys if k.startswith("jobs"))
    assert await _listed(store, "nothing/") == []


async def test_put_if_absent_writes_once(store: BlobStore) -> None:
    assert await store.put_if_absent("results/t1.parquet", b"first") is True
    assert await store.put_if_absent("results/t1.parquet", b"second") is False
    assert await store.get_bytes("results/t1.parquet") == b"first"


async def test_put_if_absent_has_one_winner_among_concurrent_writers(store: BlobStore) -> None:
    outcomes = await asyncio.gather(
        # SeaweedFS serializes conditional puts on one key in 1 s steps: keep the crowd small
        *(store.put_if_absent("results/t1", f"writer-{i}".encode()) for i in range(4))
    )
    assert outcomes.count(True) == 1
    assert await store.get_bytes("results/t1") == f"writer-{outcomes.index(True)}".encode()


async def test_put_batch_stores_stage_after_stage_and_reports_each_put(store: BlobStore) -> None:
    await store.put_bytes("results/t2/_done.json", b"earlier")
    outputs = [BlobPut(f"results/t{i}/out.parquet", f"out-{i}".encode()) for i in (1, 2)]
    markers = [
        BlobPut(f"results/t{i}/_done.json", f"done-{i}".encode(), "application/json", True)
        for i in (1, 2)
    ]
    assert await store.put_batch(outputs, markers) == [[True, True], [True, False]]
    assert await store.get_bytes("results/t1/_done.json") == b"done-1"
    assert await store.get_bytes("results/t2/_done.json") == b"earlier"  # if_absent kept it
    assert await store.get_bytes("results/t2/out.parquet") == b"out-2"
    await store.put_batch([BlobPut("results/t1/out.parquet", b"rewritten")])  # last write wins
    assert await store.get_bytes("results/t1/out.parquet") == b"rewritten"
    assert await store.put_batch() == [] and await store.put_batch([], []) == [[], []]
    assert len(await _listed(store)) == 4


async def test_get_batch_answers_in_order_with_none_for_missing(store: BlobStore) -> None:
    await store.put_batch([BlobPut("a/1", b"one"), BlobPut("b/2", b"")])
    keys = ["b/2", "a/missing", store.uri_for("a/1"), "never/there"]
    assert await store.get_batch(keys) == [b"", None, b"one", None]
    assert await store.get_batch([]) == []


async def test_a_batch_with_one_unsafe_key_writes_nothing(store: BlobStore) -> None:
    with pytest.raises(UnsafeKey):
        await store.put_batch([BlobPut("fine/k", b"x")], [BlobPut("../escape", b"y")])
    with pytest.raises(UnsafeKey):
        await store.get_batch(["fine/k", "a//b"])
    assert await _listed(store) == []


async def test_unsafe_keys_and_foreign_uris_are_refused(store: BlobStore) -> None:
    for key in ("../escape", "/abs", "a//b", "a/../b", "dir/"):
        with pytest.raises(UnsafeKey):
            await store.put_bytes(key, b"x")
        with pytest.raises(UnsafeKey):
            await store.exists(key)
    for foreign in ("s3://another-bucket/k", "file:///elsewhere/k", store.uri + "-x/k"):
        with pytest.raises(InvalidBlobUri):
            await store.get_bytes(foreign)
    assert [k async for k in store.list()] == []


# -- S3 specifics --------------------------------------------------------------------------------


@pytest.mark.integration
async def test_prefixes_isolate_stores_in_one_bucket(s3_server: SeaweedS3, s3_bucket: str) -> None:
    async with (
        _s3_store(s3_server, f"s3://{s3_bucket}/team-a") as a,
        _s3_store(s3_server, f"s3://{s3_bucket}/team-a-2") as a2,
        _s3_store(s3_server, f"s3://{s3_bucket}") as whole,
    ):
        await a.put_bytes("k", b"a")
        await a2.put_bytes("k", b"a2")
        assert [k async for k in a.list()] == ["k"]
        assert await _listed(whole) == ["team-a-2/k", "team-a/k"]
        assert await whole.get_bytes(f"s3://{s3_bucket}/team-a/k") == b"a"
        with pytest.raises(InvalidBlobUri):
            await a.get_bytes(f"s3://{s3_bucket}/team-a-2/k")


@pytest.mark.integration
async def test_content_type_and_multipart_reach_the_server(
    s3_server: SeaweedS3, s3_bucket: str, tmp_path: Path
) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(11 * MiB))
    async with _s3_store(s3_server, f"s3://{s3_bucket}/p") as store:
        await store.put_bytes("spec.json", b"{}", content_type="application/json")
        await store.put_file("big.bin", source)
    async with s3_server.client() as s3:
        head = await s3.head_object(Bucket=s3_bucket, Key="p/spec.json")
        assert head["ContentType"] == "application/json"
        big = await s3.head_object(Bucket=s3_bucket, Key="p/big.bin")
        assert big["ContentLength"] == 11 * MiB
        assert big["ETag"].strip('"').endswith("-3")  # a 3-part multipart upload
        uploads = await s3.list_multipart_uploads(Bucket=s3_bucket)
        assert not uploads.get("Uploads")  # nothing left half-uploaded


@pytest.mark.integration
async def test_one_long_lived_client_serves_every_call(
    s3_server: SeaweedS3, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[object] = []
    real_client = aioboto3.Session.client

    def counting_client(self: aioboto3.Session, *args: object, **kwargs: object) -> object:
        opened.append(kwargs.get("endpoint_url"))
        return real_client(self, *args, **kwargs)

    monkeypatch.setattr(aioboto3.Session, "client", counting_client)
    async with _s3_store(s3_server, f"s3://{s3_bucket}/p") as store:
        await asyncio.gather(*(store.put_bytes(f"k{i}", b"x") for i in range(10)))
        assert await store.get_bytes("k3") == b"x" and await store.exists("k9")
        assert len(await _listed(store)) == 10
    assert opened == [s3_server.endpoint_url]


@pytest.mark.integration
async def test_put_if_absent_head_then_put_fallback(s3_server: SeaweedS3, s3_bucket: str) -> None:
    async with _s3_store(s3_server, f"s3://{s3_bucket}/p", conditional_put=False) as store:
        assert await store.put_if_absent("results/t1", b"first") is True
        assert await store.put_if_absent("results/t1", b"second") is False
        assert await store.get_bytes("results/t1") == b"first"


@pytest.mark.integration
async def test_missing_bucket_is_a_configuration_error(s3_server: SeaweedS3) -> None:
    name = f"absent-{uuid.uuid4().hex[:12]}"
    async with _s3_store(s3_server, f"s3://{name}/p") as store:
        with pytest.raises(BucketNotFound, match=name) as info:
            await store.get_bytes("k")
        assert info.value.hint and s3_server.endpoint_url in str(info.value)
        with pytest.raises(BucketNotFound):
            _ = [k async for k in store.list()]
        # AWS answers NoSuchBucket here; SeaweedFS answers AccessDenied: both name the bucket
        with pytest.raises((BucketNotFound, BlobAccessDenied), match=name):
            await store.put_bytes("k", b"x")
        assert not await store.exists("k")


async def test_closed_port_is_unavailable_within_bounded_time() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    async with open_blob_store(
        "s3://bucket/p", endpoint_url=endpoint, access_key="k", secret_key="s"
    ) as store:
        started = time.monotonic()
        with pytest.raises(BlobStoreUnavailable) as info:
            await store.get_bytes("k")  # default settings: 3 attempts, jittered backoff
        elapsed = time.monotonic() - started
    assert elapsed < 10, f"took {elapsed:.1f}s"
    assert info.value.endpoint == endpoint and endpoint in str(info.value)
    assert "MODELOPS_S3_ENDPOINT" in str(info.value)
    fast = dataclasses.replace(S3Settings(), max_attempts=1)
    async with open_blob_store(
        "s3://bucket/p", endpoint_url=endpoint, access_key="k", secret_key="s", settings=fast
    ) as store:
        for attempt in (
            store.put_bytes("k", b"x"),
            store.exists("k"),
            store.put_if_absent("k", b"x"),
            store.delete("k"),
        ):
            with pytest.raises(BlobStoreUnavailable):
                await attempt
        with pytest.raises(BlobStoreUnavailable):
            _ = [k async for k in store.list()]
