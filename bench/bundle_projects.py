"""The two model projects the bundle benchmark pushes: one huge file, and many small ones.

Content is random (so no blob is shared with another project or a previous run) but sizes are
seeded, so the same profile always measures the same shape. Files are aged an hour into the past
because the digest cache distrusts a file modified within 2 s of being hashed (its racy-clean
rule), and a benchmark that registers right after writing would otherwise never see a cache hit.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ENTRYPOINT",
    "MODEL_PATH",
    "Project",
    "age_tree",
    "big_file_project",
    "many_files_project",
]

ENTRYPOINT = "model:SIR"
MODEL_PATH = "model.py"
DATA_DIR = "data"
_MODEL = b'''\
"""A stand-in model: registration only scans it, the bundle benchmark never runs it."""


class SIR:
    outputs = ["prevalence"]

    def simulate(self, params, seed):
        return {"prevalence": {"t": [0], "i": [params["beta"]]}}
'''
_WRITE_CHUNK = 8 << 20


@dataclass(frozen=True)
class Project:
    """A project on disk: its root and the data files it tracks (relative paths, sizes)."""

    name: str
    root: Path
    data: dict[str, int]

    @property
    def data_bytes(self) -> int:
        return sum(self.data.values())

    def paths(self) -> list[Path]:
        """Absolute paths of the data files, sorted."""
        return [self.root / rel for rel in sorted(self.data)]


def _write_random(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        left = size
        while left:
            n = min(left, _WRITE_CHUNK)
            fh.write(os.urandom(n))
            left -= n


def age_tree(root: Path, seconds: float = 3600) -> None:
    """Set every file's mtime `seconds` into the past (see the module docstring for why)."""
    past = time.time() - seconds
    for dirpath, _, names in os.walk(root):
        for name in names:
            os.utime(os.path.join(dirpath, name), (past, past))


def _start(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=False)
    (root / MODEL_PATH).write_bytes(_MODEL)


def big_file_project(root: Path, size: int) -> Project:
    """A model, one `size`-byte data file and one small CSV (the file a re-push changes)."""
    _start(root)
    data = {f"{DATA_DIR}/big.bin": size, f"{DATA_DIR}/params.csv": 32}
    _write_random(root / DATA_DIR / "big.bin", size)
    (root / DATA_DIR / "params.csv").write_bytes(
        b"beta,gamma\n" + os.urandom(10).hex().encode() + b",0.1\n"
    )
    age_tree(root)
    return Project(f"{size >> 20}MiB", root, data)


def many_files_project(
    root: Path, count: int, *, min_size: int = 1 << 10, max_size: int = 50 << 10, seed: int = 1
) -> Project:
    """A model and `count` data files of `min_size`..`max_size` bytes, 100 to a folder."""
    _start(root)
    rng = random.Random(seed)
    data: dict[str, int] = {}
    for i in range(count):
        rel = f"{DATA_DIR}/d{i // 100:03d}/f{i:05d}.bin"
        size = rng.randint(min_size, max_size)
        _write_random(root / rel, size)
        data[rel] = size
    age_tree(root)
    return Project(f"{count}files", root, data)
