"""The digest cache: unchanged files are not read again; changed ones always are."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import msgspec
import pytest
from structlog.testing import capture_logs

from modelops_bundle import hashing
from modelops_bundle.digest_cache import DigestCache
from modelops_bundle.errors import ProjectError
from modelops_bundle.hashing import compute_file_digest

from .example_project import age


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / ".modelops-bundle").mkdir()
    for i in range(5):
        (tmp_path / "data").mkdir(exist_ok=True)
        (tmp_path / "data" / f"f{i}.csv").write_bytes(f"row {i}\n".encode() * (i + 1))
    age(tmp_path)
    return tmp_path


@pytest.fixture
def count_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every file the cache actually reads, by name."""
    reads: list[str] = []
    real = hashing.hash_open_file

    def counting(fh, **kw):  # type: ignore[no-untyped-def]
        reads.append(os.path.basename(os.readlink(f"/proc/self/fd/{fh.fileno()}")))
        return real(fh, **kw)

    monkeypatch.setattr(hashing, "hash_open_file", counting)
    return reads


RELS = [f"data/f{i}.csv" for i in range(5)]


def test_second_process_does_not_reread_unchanged_files(
    project: Path, count_reads: list[str]
) -> None:
    first = DigestCache(project)
    got = first.digest_many(RELS)
    assert len(count_reads) == 5 and first.hashed == 5 and first.cached == 0
    assert all(got[r].digest == compute_file_digest(project / r) for r in RELS)
    assert first.save()
    assert (project / ".modelops-bundle/cache/digests.json").is_file()

    count_reads.clear()
    second = DigestCache(project)  # a later command: loads the file
    again = second.digest_many(RELS)
    assert count_reads == []
    assert second.cached == 5 and second.hashed == 0
    assert {r: (d.digest, d.size) for r, d in again.items()} == {
        r: (d.digest, d.size) for r, d in got.items()
    }
    assert all(d.cached for d in again.values())
    assert not second.save()  # nothing new: no write


def test_changed_content_with_restored_mtime_is_rehashed(
    project: Path, count_reads: list[str]
) -> None:
    rel = "data/f2.csv"
    path = project / rel
    cache = DigestCache(project)
    old = cache.digest(rel)
    cache.save()
    st = path.stat()
    path.write_bytes(b"X" * st.st_size)  # same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime put back, as `cp -p` would do
    count_reads.clear()
    new = DigestCache(project).digest(rel)
    assert count_reads == ["f2.csv"]  # ctime gave it away
    assert new.digest != old.digest and new.digest == compute_file_digest(path)


def test_freshly_modified_file_is_not_trusted(tmp_path: Path, count_reads: list[str]) -> None:
    (tmp_path / "fresh.txt").write_bytes(b"just written")
    cache = DigestCache(tmp_path, persist=False)
    cache.digest("fresh.txt")
    cache.digest("fresh.txt")  # racy: mtime within RACY_NS of the hash, so read again
    assert count_reads == ["fresh.txt", "fresh.txt"]
    age(tmp_path)
    cache.digest("fresh.txt")  # re-hashed since the signature changed (mtime) ...
    cache.digest("fresh.txt")  # ... and now trusted
    assert count_reads == ["fresh.txt"] * 3


def test_in_memory_cache_never_writes(project: Path) -> None:
    cache = DigestCache(project, persist=False)
    cache.digest_many(RELS)
    assert not cache.save()
    assert not (project / ".modelops-bundle/cache").exists()


def test_unreadable_cache_file_is_rebuilt_with_a_warning(
    project: Path, count_reads: list[str]
) -> None:
    path = project / ".modelops-bundle/cache/digests.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"version": 1, "entries": {"data/f0.csv": [1, 2')
    with capture_logs() as logs:
        cache = DigestCache(project)
    assert [e["event"] for e in logs] == ["digest_cache.unreadable"]
    cache.digest_many(RELS)
    assert len(count_reads) == 5
    cache.save()
    assert len(msgspec.json.decode(path.read_bytes())["entries"]) == 5


def test_save_drops_entries_of_deleted_files(project: Path) -> None:
    cache = DigestCache(project)
    cache.digest_many(RELS)
    cache.save()
    (project / "data/f0.csv").unlink()
    cache.digest("data/f1.csv")  # cached: nothing dirty
    (project / "data/new.csv").write_bytes(b"n")
    cache.digest("data/new.csv")
    cache.save()
    entries = msgspec.json.decode((project / ".modelops-bundle/cache/digests.json").read_bytes())[
        "entries"
    ]
    assert sorted(entries) == [
        "data/f1.csv",
        "data/f2.csv",
        "data/f3.csv",
        "data/f4.csv",
        "data/new.csv",
    ]


def test_special_and_missing_files_are_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    cache = DigestCache(tmp_path, persist=False)
    with pytest.raises(ProjectError, match="'pipe' is not a regular file"):
        cache.digest("pipe")  # must not block waiting for a writer
    with pytest.raises(ProjectError, match="cannot read 'gone'"):
        cache.digest("gone")


def _save_many(root: str, worker: int, start: multiprocessing.synchronize.Event) -> None:
    start.wait(10)
    for i in range(15):
        rel = f"w{worker}/{i}.txt"
        cache = DigestCache(root)
        cache.digest(rel)
        cache.save()


def test_concurrent_saves_never_corrupt_the_file(tmp_path: Path) -> None:
    past = time.time() - 3600
    for w in range(2):
        (tmp_path / f"w{w}").mkdir()
        for i in range(15):
            p = tmp_path / f"w{w}" / f"{i}.txt"
            p.write_bytes(f"{w}-{i}".encode())
            os.utime(p, (past, past))
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    procs = [ctx.Process(target=_save_many, args=(str(tmp_path), w, start)) for w in range(2)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    data = (tmp_path / ".modelops-bundle/cache/digests.json").read_bytes()
    entries = msgspec.json.decode(data)["entries"]  # parses: never torn
    assert entries  # the last writer's merge is there; losing others' entries is allowed
    assert not list((tmp_path / ".modelops-bundle/cache").glob("*.tmp"))
