"""The pull cache survives power loss by boot id, not fsync: a tree written without fsync is
trusted only in the boot that wrote it; elsewhere (no boot id) every write is fsynced."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from modelops_bundle import materialize
from modelops_bundle.oci import MARKER_FILENAME
from modelops_bundle.pull import pull_bundle
from modelops_bundle.push import push_bundle
from modelops_bundle.registry_file import dump_registry
from modelops_bundle.stores import LayoutStore
from tests.unit.bundle.oci_helpers import make_project
from tests.unit.bundle.test_push_pull_layout import CountingStore

REPO = "demo/sir"


@pytest.fixture
def pushed(tmp_path: Path) -> tuple[LayoutStore, str, Path, Any]:
    root = tmp_path / "project"
    registry = make_project(root)
    store = LayoutStore(tmp_path / "layout")
    result = push_bundle(
        root, registry, store, repository=REPO, registry_yaml=dump_registry(registry)
    )
    return store, result.bundle.bundle_ref, root, registry


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return calls


def _boot(monkeypatch: pytest.MonkeyPatch, boot: str | None) -> None:
    monkeypatch.setattr(materialize, "current_boot_id", lambda: boot)


def test_the_real_boot_id_is_read_on_linux() -> None:
    if not materialize.BOOT_ID_FILE.is_file():
        pytest.fail("this test runs on Linux, which has /proc/sys/kernel/random/boot_id")
    assert len(materialize.current_boot_id() or "") == 36


def test_a_pull_with_a_boot_id_writes_no_fsync_and_marks_the_boot(
    tmp_path: Path, pushed: Any, fsyncs: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, ref, root, registry = pushed
    _boot(monkeypatch, "boot-a")
    tree = pull_bundle(store, ref, cache_dir=tmp_path / "cache")
    assert fsyncs == []
    assert (tree / MARKER_FILENAME).read_text().splitlines()[1] == "boot boot-a"
    for path in registry.files():
        assert (tree / path).read_bytes() == (root / path).read_bytes()


def test_after_a_reboot_an_unsynced_tree_is_distrusted_and_pulled_again(
    tmp_path: Path, pushed: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, ref, root, registry = pushed
    cache = tmp_path / "cache"
    _boot(monkeypatch, "boot-a")
    tree = pull_bundle(store, ref, cache_dir=cache)
    # power loss: a file the kernel never wrote back comes back as zeros
    victim = tree / next(iter(registry.files()))
    size = victim.stat().st_size
    os.chmod(victim, 0o644)
    victim.write_bytes(b"\0" * size)
    _boot(monkeypatch, "boot-b")
    counting = CountingStore(store)
    again = pull_bundle(counting, ref, cache_dir=cache)  # type: ignore[arg-type]
    assert again == tree
    assert counting.calls["open_blob"] >= 1, "the distrusted tree was used without a pull"
    assert (again / MARKER_FILENAME).read_text().splitlines()[1] == "boot boot-b"
    for path in registry.files():
        assert (again / path).read_bytes() == (root / path).read_bytes()
        assert stat.S_IMODE((again / path).stat().st_mode) == 0o444
    # and within the new boot it is reused without the store
    quiet = CountingStore(store)
    assert pull_bundle(quiet, ref, cache_dir=cache) == tree  # type: ignore[arg-type]
    assert sum(quiet.calls.values()) == 0


def test_without_a_boot_id_every_write_is_fsynced_and_trusted_across_boots(
    tmp_path: Path, pushed: Any, fsyncs: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, ref, _, registry = pushed
    cache = tmp_path / "cache"
    _boot(monkeypatch, None)
    tree = pull_bundle(store, ref, cache_dir=cache)
    blobs = {f.digest for f in registry.models["sir"].files}
    # every blob, the index and the marker, and the folders holding them
    assert len(fsyncs) >= len(blobs) + 2 + 1
    assert (tree / MARKER_FILENAME).read_text().splitlines() == [ref.split("@")[1]]
    _boot(monkeypatch, "boot-later")
    counting = CountingStore(store)
    assert pull_bundle(counting, ref, cache_dir=cache) == tree  # type: ignore[arg-type]
    assert sum(counting.calls.values()) == 0


@pytest.mark.parametrize("marker", [b"", b"sha256:" + b"0" * 64 + b"\n", b"\xff\xfe"])
def test_a_truncated_or_foreign_marker_makes_the_tree_pulled_again(
    tmp_path: Path, pushed: Any, marker: bytes
) -> None:
    store, ref, root, registry = pushed
    cache = tmp_path / "cache"
    tree = pull_bundle(store, ref, cache_dir=cache)
    os.chmod(tree / MARKER_FILENAME, 0o644)
    (tree / MARKER_FILENAME).write_bytes(marker)
    assert materialize.complete_tree(cache, ref.split("@")[1]) is None
    again = pull_bundle(store, ref, cache_dir=cache)
    assert (again / MARKER_FILENAME).read_text().splitlines()[0] == ref.split("@")[1]
    for path in registry.files():
        assert (again / path).read_bytes() == (root / path).read_bytes()
