"""The file:// blob store and the pure key/URI/settings rules, without any server.

The backend-neutral contract (round trips, listing, put_if_absent...) also runs against S3 in
tests/integration/runtime/test_blobstore_s3.py; this module adds what only a local folder can
show: atomicity under failures and crashes, and folder/key conflicts.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelops_runtime import blobstore
from modelops_runtime.blobstore import (
    BlobConflict,
    BlobNotFound,
    BlobPut,
    BlobStore,
    BlobStoreError,
    FileBlobStore,
    InvalidBlobUri,
    S3Settings,
    UnsafeKey,
    _atomic,
    filestore,
    join_uri,
    key_of,
    open_blob_store,
    parse_blob_uri,
    validate_key,
    validate_prefix,
)
from modelops_runtime.blobstore.keys import TMP_PREFIX
from modelops_runtime.blobstore.s3store import S3BlobStore
from tests.support.waiting import wait_while_running

# -- pure rules: keys, URIs, settings ----------------------------------------------------------

UNSAFE_KEYS = [
    "",
    "/abs/key",
    "dir/",
    "a//b",
    "a/./b",
    "../escape",
    "a/../../escape",
    "..",
    ".",
    "back\\slash",
    "nul\x00byte",
    "new\nline",
    f"jobs/{TMP_PREFIX}abc",
    "x" * 1025,
]


@pytest.mark.parametrize("key", UNSAFE_KEYS)
def test_unsafe_keys_are_refused(key: str) -> None:
    with pytest.raises(UnsafeKey) as info:
        validate_key(key)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "key",
    ["spec.json", "jobs/job-1/spec.json", "outputs/ab12/cases.parquet", "a b/ü.txt", ".hidden"],
)
def test_safe_keys_pass(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize("prefix", ["", "jobs/", "jobs/j", "a b/"])
def test_prefixes(prefix: str) -> None:
    assert validate_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["/jobs", "../", "a//", "jobs/../"])
def test_unsafe_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(UnsafeKey):
        validate_prefix(prefix)


@pytest.mark.parametrize(
    ("uri", "canonical"),
    [
        ("s3://bucket", "s3://bucket"),
        ("s3://bucket/", "s3://bucket"),
        ("s3://my.bucket-1/modelops/dev/", "s3://my.bucket-1/modelops/dev"),
        ("file:///srv/blobs", "file:///srv/blobs"),
        ("file:///srv/blobs/", "file:///srv/blobs"),
        ("file://localhost/srv/x/../blobs", "file:///srv/blobs"),
    ],
)
def test_store_uris_parse_to_canonical_form(uri: str, canonical: str) -> None:
    assert parse_blob_uri(uri).uri == canonical
    assert parse_blob_uri(canonical).uri == canonical


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("/srv/blobs", "no scheme"),
        ("bucket/prefix", "no scheme"),
        ("gs://bucket/x", "unsupported scheme 'gs'"),
        ("s3://", "invalid bucket"),
        ("s3://Upper_Case", "invalid bucket"),
        ("s3://ab", "invalid bucket"),
        ("s3://bucket/a/../b", "unsafe prefix"),
        ("file://relative/dir", "not an absolute file URI"),
        ("file://", "not an absolute file URI"),
        ("file:///", "filesystem root"),
    ],
)
def test_bad_store_uris_name_the_problem_and_hint(uri: str, fragment: str) -> None:
    with pytest.raises(InvalidBlobUri) as info:
        open_blob_store(uri)
    assert fragment in str(info.value)
    assert info.value.hint or "hint" in str(info.value)


def test_uris_round_trip_and_foreign_uris_are_refused() -> None:
    base = "s3://bucket/pre"
    uri = join_uri(base, "jobs/j1/spec.json")
    assert uri == "s3://bucket/pre/jobs/j1/spec.json"
    assert key_of(base, uri) == "jobs/j1/spec.json"
    assert key_of(base, "jobs/j1/spec.json") == "jobs/j1/spec.json"
    for foreign in ("s3://other/pre/k", "s3://bucket/prefix/k", "file:///bucket/pre/k"):
        with pytest.raises(InvalidBlobUri, match="not inside the blob store"):
            key_of(base, foreign)
    with pytest.raises(UnsafeKey):
        key_of(base, "s3://bucket/pre/../k")


def test_s3_settings_take_arguments_over_environment() -> None:
    env = {
        "MODELOPS_S3_ENDPOINT": "http://env:8333",
        "AWS_ACCESS_KEY_ID": "env-key",
        "AWS_SECRET_ACCESS_KEY": "env-secret",
    }
    from_env = S3Settings.from_env(env)
    assert (from_env.endpoint_url, from_env.access_key, from_env.region) == (
        "http://env:8333",
        "env-key",
        "us-east-1",
    )
    assert from_env.path_style
    given = S3Settings.from_env(env, endpoint_url="http://arg:1", region="eu-west-1")
    assert (given.endpoint_url, given.secret_key, given.region) == (
        "http://arg:1",
        "env-secret",
        "eu-west-1",
    )
    aws = S3Settings.from_env({})
    assert aws.endpoint_url is None and not aws.path_style and aws.access_key is None
    assert aws.endpoint_name == "AWS S3 (us-east-1)"


async def test_open_blob_store_picks_the_backend_without_connecting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = open_blob_store(f"file://{tmp_path}")
    assert isinstance(local, FileBlobStore) and isinstance(local, BlobStore)
    monkeypatch.setenv("MODELOPS_S3_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    remote = open_blob_store("s3://bucket/p/", access_key="k", secret_key="s")
    assert isinstance(remote, S3BlobStore) and isinstance(remote, BlobStore)
    assert remote.uri == "s3://bucket/p"
    assert (remote.settings.endpoint_url, remote.settings.region) == (
        "http://127.0.0.1:9",
        "eu-central-1",
    )
    tuned = open_blob_store(
        "s3://bucket", region="us-west-2", settings=S3Settings(page_size=10, region="x")
    )
    assert isinstance(tuned, S3BlobStore)
    assert (tuned.settings.page_size, tuned.settings.region) == (10, "us-west-2")
    await remote.close()
    await tuned.close()


def test_exported_names_exist() -> None:
    assert sorted(blobstore.__all__) == blobstore.__all__
    for name in blobstore.__all__:
        assert getattr(blobstore, name) is not None


# -- the file backend ------------------------------------------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> FileBlobStore:
    blob_store = open_blob_store(f"file://{tmp_path}/blobs")
    assert isinstance(blob_store, FileBlobStore)
    return blob_store


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(TMP_PREFIX)] if root.exists() else []


async def test_round_trip_by_key_and_by_uri(store: FileBlobStore, tmp_path: Path) -> None:
    uri = await store.put_bytes("jobs/j1/spec.json", b'{"a":1}', content_type="application/json")
    assert uri == f"file://{tmp_path}/blobs/jobs/j1/spec.json" == store.uri_for("jobs/j1/spec.json")
    assert await store.get_bytes("jobs/j1/spec.json") == b'{"a":1}'
    assert await store.get_bytes(uri) == b'{"a":1}'
    assert await store.exists(uri)
    dest = tmp_path / "out" / "spec.json"
    await store.get_file(uri, dest)
    assert dest.read_bytes() == b'{"a":1}'
    await store.delete(uri)
    assert not await store.exists("jobs/j1/spec.json")
    await store.delete(uri)  # deleting again is not an error (S3 semantics)


async def test_missing_blob_raises_blob_not_found_with_uri(
    store: FileBlobStore, tmp_path: Path
) -> None:
    await store.put_bytes("jobs/j1/spec.json", b"x")
    for key in ("nope", "jobs/j1", "jobs/j1/spec.json/deeper"):
        with pytest.raises(BlobNotFound) as info:
            await store.get_bytes(key)
        assert info.value.uri == store.uri_for(key)
        assert store.uri_for(key) in str(info.value)
    dest = tmp_path / "dest.bin"
    with pytest.raises(BlobNotFound):
        await store.get_file("nope", dest)
    assert not dest.exists() and _leftovers(tmp_path) == []


async def test_put_twice_last_write_wins(store: FileBlobStore) -> None:
    await store.put_bytes("k", b"first")
    await store.put_bytes("k", b"second")
    assert await store.get_bytes("k") == b"second"
    assert [key async for key in store.list()] == ["k"]


async def test_put_file_streams_and_missing_source_is_file_not_found(
    store: FileBlobStore, tmp_path: Path
) -> None:
    source = tmp_path / "big.bin"
    payload = os.urandom(3 * _atomic.CHUNK + 123)
    source.write_bytes(payload)
    uri = await store.put_file("outputs/t1/big.bin", source)
    assert await store.get_bytes(uri) == payload
    with pytest.raises(FileNotFoundError):
        await store.put_file("outputs/t2/big.bin", tmp_path / "absent.bin")
    assert not await store.exists("outputs/t2/big.bin")


async def test_list_is_sorted_and_prefix_is_a_string_prefix(store: FileBlobStore) -> None:
    keys = ["jobs/j2/spec.json", "jobs/j1/spec.json", "jobs/j10/a", "jobsx", "other/k", "top"]
    await asyncio.gather(*(store.put_bytes(key, key.encode()) for key in keys))
    assert [k async for k in store.list()] == sorted(keys)
    assert [k async for k in store.list("jobs/")] == [
        "jobs/j1/spec.json",
        "jobs/j10/a",
        "jobs/j2/spec.json",
    ]
    assert [k async for k in store.list("jobs/j1")] == ["jobs/j1/spec.json", "jobs/j10/a"]
    assert [k async for k in store.list("jobs")] == sorted(k for k in keys if k.startswith("jobs"))
    assert [k async for k in store.list("nothing/")] == []
    with pytest.raises(UnsafeKey):
        _ = [k async for k in store.list("../")]


async def test_listing_an_empty_or_absent_store_yields_nothing(tmp_path: Path) -> None:
    store = open_blob_store(f"file://{tmp_path}/never-written")
    assert [k async for k in store.list()] == []
    assert not await store.exists("k")


async def test_unsafe_keys_and_foreign_uris_never_touch_the_disk(
    store: FileBlobStore, tmp_path: Path
) -> None:
    for key in ("../outside", "/etc/passwd", "a//b"):
        with pytest.raises(UnsafeKey):
            await store.put_bytes(key, b"x")
        with pytest.raises(UnsafeKey):
            await store.get_bytes(key)
    with pytest.raises(InvalidBlobUri):
        await store.get_bytes(f"file://{tmp_path}/elsewhere/k")
    assert not (tmp_path / "outside").exists()
    assert not store.root.exists()


async def test_put_if_absent_writes_once(store: FileBlobStore) -> None:
    assert await store.put_if_absent("results/t1", b"first") is True
    assert await store.put_if_absent("results/t1", b"second") is False
    assert await store.get_bytes("results/t1") == b"first"
    assert _leftovers(store.root) == []


async def test_put_if_absent_has_exactly_one_winner_among_concurrent_writers(
    store: FileBlobStore,
) -> None:
    outcomes = await asyncio.gather(
        *(store.put_if_absent("results/t1", f"writer-{i}".encode()) for i in range(16))
    )
    assert sorted(outcomes) == [False] * 15 + [True]
    winner = outcomes.index(True)
    assert await store.get_bytes("results/t1") == f"writer-{winner}".encode()


async def test_a_key_and_a_folder_of_keys_conflict(store: FileBlobStore) -> None:
    await store.put_bytes("a/b", b"x")
    with pytest.raises(BlobConflict, match="'a' and key 'a/b'"):
        await store.put_bytes("a", b"y")
    with pytest.raises(BlobConflict):
        await store.put_if_absent("a", b"y")
    await store.put_bytes("c", b"x")
    with pytest.raises(BlobConflict):
        await store.put_bytes("c/d", b"y")
    assert [k async for k in store.list()] == ["a/b", "c"]


# -- batches -----------------------------------------------------------------------------------


async def test_put_batch_syncs_once_per_stage_before_the_next_stage_is_written(
    store: FileBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[list[str], list[str]]] = []
    real_sync = filestore.sync_writes

    def recording_sync(root: Path, paths: list[str]) -> None:
        on_disk = sorted(p.relative_to(store.root).as_posix() for p in store.root.rglob("*.*"))
        seen.append(([Path(p).relative_to(store.root).as_posix() for p in paths], on_disk))
        real_sync(root, paths)

    monkeypatch.setattr(filestore, "sync_writes", recording_sync)
    outputs = [BlobPut("r/t1/a.parquet", b"a"), BlobPut("r/t2/a.parquet", b"b")]
    markers = [BlobPut("r/t1/_done.json", b"{}", if_absent=True)]
    assert await store.put_batch(outputs, markers) == [[True, True], [True]]
    assert seen == [
        (["r/t1/a.parquet", "r/t2/a.parquet"], ["r/t1/a.parquet", "r/t2/a.parquet"]),
        (["r/t1/_done.json"], ["r/t1/_done.json", "r/t1/a.parquet", "r/t2/a.parquet"]),
    ]
    assert _leftovers(store.root) == []


async def test_if_absent_puts_sharing_one_bytes_object_are_one_file_linked_at_each_key(
    store: FileBlobStore,
) -> None:
    assert store.links_shared_puts
    await store.put_bytes("r/taken.json", b"earlier")
    await store.put_bytes("r/folder.json/x", b"a folder of other keys")
    shared = b'[{"task": 1}, {"task": 2}, {"task": 3}]'
    keys = ["r/a.json", "r/new/b.json", "r/taken.json", "r/c.json"]
    puts = [BlobPut(k, shared, if_absent=True) for k in keys]
    (written,) = await store.put_batch(puts)
    assert written == [True, True, False, True]  # a folder is made where missing
    assert await store.get_batch(keys) == [shared, shared, b"earlier", shared]
    inodes = {(store.root / k).stat().st_ino for k in ("r/a.json", "r/new/b.json", "r/c.json")}
    assert len(inodes) == 1 and (store.root / "r/a.json").stat().st_nlink == 3
    # replacing one name leaves the others as they were
    await store.put_bytes("r/a.json", b"replaced")
    assert await store.get_batch(["r/a.json", "r/c.json"]) == [b"replaced", shared]
    # a key where a folder of other keys is: that key alone fails, as it would on its own
    with pytest.raises(BlobConflict):
        await store.put_batch(
            [BlobPut(k, shared, if_absent=True) for k in ("r/d", "r/folder.json")]
        )
    assert _leftovers(store.root) == []


async def test_put_batch_without_syncfs_fsyncs_every_file_and_new_folder(
    store: FileBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(_atomic, "_syncfs", None)  # as on macOS
    monkeypatch.setattr(_atomic.os, "fsync", recording_fsync)
    await store.put_batch([BlobPut("r/t1/a.parquet", b"a"), BlobPut("r/t1/b.parquet", b"b")])
    root = str(store.root)
    assert sorted(synced) == sorted(
        [f"{root}/r/t1/a.parquet", f"{root}/r/t1/b.parquet", f"{root}/r/t1", f"{root}/r", root]
    )


async def test_a_failed_sync_fails_the_batch_and_names_the_store(
    store: FileBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_disk(root: Path, paths: list[str]) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(filestore, "sync_writes", broken_disk)
    with pytest.raises(BlobStoreError, match="Input/output error") as info:
        await store.put_batch([BlobPut("r/a", b"a")], [BlobPut("r/b", b"b")])
    assert store.uri in str(info.value) and info.value.hint
    monkeypatch.undo()
    assert not await store.exists("r/b")  # the second stage never started
    assert _leftovers(store.root) == []


async def test_a_conflicting_key_in_a_batch_is_a_blob_conflict(store: FileBlobStore) -> None:
    await store.put_bytes("a/b", b"x")
    with pytest.raises(BlobConflict):
        await store.put_batch([BlobPut("a", b"y", if_absent=True)])
    with pytest.raises(BlobConflict):
        await store.put_batch([BlobPut("a/b/c", b"y")])
    assert await store.get_batch(["a", "a/b", "a/b/c"]) == [None, b"x", None]
    assert _leftovers(store.root) == []


# -- atomicity ---------------------------------------------------------------------------------


async def test_failure_before_rename_leaves_no_object_and_no_temp_file(
    store: FileBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.put_bytes("jobs/old", b"old content")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_atomic.os, "fsync", disk_full)
    with pytest.raises(BlobStoreError, match="No space left") as info:
        await store.put_bytes("jobs/new", b"new content")
    assert "jobs/new" in str(info.value) and info.value.hint
    with pytest.raises(BlobStoreError):
        await store.put_bytes("jobs/old", b"replacement")
    monkeypatch.undo()
    assert not await store.exists("jobs/new")
    assert await store.get_bytes("jobs/old") == b"old content"  # the old object is intact
    assert _leftovers(store.root) == []


async def test_failure_mid_copy_leaves_no_object(
    store: FileBlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(b"z" * (3 * _atomic.CHUNK))

    def half_then_fail(self: _atomic.AtomicWriter, src: object) -> None:
        self.write(src.read(_atomic.CHUNK))  # type: ignore[attr-defined]
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(_atomic.AtomicWriter, "write_from", half_then_fail)
    with pytest.raises(BlobStoreError, match="Input/output error"):
        await store.put_file("outputs/t1/big.bin", source)
    dest = tmp_path / "copy.bin"
    await store.put_bytes("k", b"kept")
    with pytest.raises(OSError, match="Input/output error"):
        await store.get_file("k", dest)  # the caller's own path: a plain OSError
    monkeypatch.undo()
    assert not await store.exists("outputs/t1/big.bin")
    assert not dest.exists()
    assert _leftovers(tmp_path) == []


async def test_readers_never_see_a_half_written_object(store: FileBlobStore) -> None:
    size = 2 * _atomic.CHUNK
    versions = {bytes([65 + i]) * size for i in range(4)}
    await store.put_bytes("hot", next(iter(versions)))

    async def writer() -> None:
        for _ in range(10):
            for version in versions:
                await store.put_bytes("hot", version)

    async def reader() -> int:
        reads = 0
        while not writing.done():
            assert await store.get_bytes("hot") in versions
            reads += 1
        return reads

    writing = asyncio.ensure_future(writer())
    reads = await asyncio.gather(reader(), reader())
    await writing
    assert sum(reads) > 0


_CRASHING_WRITER = """
import asyncio, sys
from pathlib import Path
from modelops_runtime.blobstore import open_blob_store
asyncio.run(open_blob_store(sys.argv[1]).put_file("jobs/big.bin", Path(sys.argv[2])))
"""


def _open_fifo_for_writing(fifo: Path) -> int | None:
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO until the reader has opened it
    except OSError:
        return None
    os.set_blocking(fd, True)
    return fd


def _kill_a_writer_mid_write(store_uri: str, tmp_path: Path) -> list[Path]:
    """Start a process putting a FIFO's content, feed it part, SIGKILL it; return its temp files."""
    fifo = tmp_path / "source.fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-c", _CRASHING_WRITER, store_uri, str(fifo)])
    try:
        fd = wait_while_running(
            lambda: _open_fifo_for_writing(fifo), proc, "the writer to open the fifo"
        )
        os.write(fd, b"p" * (3 * _atomic.CHUNK))  # blocks until the writer has taken most of it
        partial = wait_while_running(
            lambda: [p for p in _leftovers(tmp_path / "blobs") if p.stat().st_size > 0],
            proc,
            "a partial temporary file",
        )
        proc.kill()  # SIGKILL mid-write: no cleanup code of ours runs
        proc.wait(timeout=10)
        os.close(fd)
        return partial
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


async def test_a_writer_killed_mid_write_leaves_no_object(tmp_path: Path) -> None:
    store = open_blob_store(f"file://{tmp_path}/blobs")
    partial = await asyncio.to_thread(_kill_a_writer_mid_write, store.uri, tmp_path)
    assert partial and partial[0].exists()  # the crash residue is there...
    assert not await store.exists("jobs/big.bin")  # ...but no object appeared
    assert [k async for k in store.list()] == []  # and listings skip it
    await store.put_bytes("jobs/big.bin", b"retried")
    assert [k async for k in store.list()] == ["jobs/big.bin"]
    assert await store.get_bytes("jobs/big.bin") == b"retried"
