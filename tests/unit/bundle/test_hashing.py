"""compute_file_digest: streamed sha256 that matches hashlib on every size around the chunk."""

from __future__ import annotations

import hashlib
import io
import os
import re
from pathlib import Path

import pytest

from modelops_bundle.hashing import CHUNK_SIZE, compute_file_digest, digest_bytes, hash_open_file

SMALL_CHUNK = 4096


def _expected(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    "size", [0, 1, SMALL_CHUNK - 1, SMALL_CHUNK, SMALL_CHUNK + 1, 3 * SMALL_CHUNK + 7]
)
def test_matches_hashlib_around_a_small_chunk(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert compute_file_digest(path, chunk_size=SMALL_CHUNK) == _expected(data)
    with path.open("rb") as fh:
        assert hash_open_file(fh, chunk_size=SMALL_CHUNK) == (_expected(data), size)


def test_matches_hashlib_beyond_the_default_chunk(tmp_path: Path) -> None:
    data = os.urandom(2 * CHUNK_SIZE + 12345)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert compute_file_digest(path) == _expected(data)
    assert compute_file_digest(str(path)) == _expected(data)


def test_empty_file_and_bytes(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    empty = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert compute_file_digest(tmp_path / "empty") == empty
    assert digest_bytes(b"") == empty
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest_bytes(b"abc"))


def test_stream_without_readinto_is_hashed_with_read() -> None:
    class ReadOnly:
        def __init__(self, data: bytes) -> None:
            self._buf = io.BytesIO(data)

        def read(self, n: int) -> bytes:
            return self._buf.read(n)

    data = b"x" * (SMALL_CHUNK * 2 + 3)
    assert hash_open_file(ReadOnly(data), chunk_size=SMALL_CHUNK) == (_expected(data), len(data))  # type: ignore[arg-type]


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        compute_file_digest(tmp_path / "nope")
