"""Test helpers for the OCI half of the bundle library: a small real project on disk."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from modelops_contracts import ModelEntry, Registry, TrackedFile

__all__ = ["DEFAULT_FILES", "make_project", "registry_for", "tracked", "write_big_file"]

DEFAULT_FILES: dict[str, bytes] = {
    "model.py": b"class SIR:\n    def simulate(self, params, seed):\n        return {}\n",
    "util/helpers.py": b"X = 1\n",
    "data/contacts.csv": b"a,b\n1,2\n",
    "data/empty.txt": b"",
    "data/also_empty.txt": b"",  # same blob as empty.txt: two paths, one digest
}


def tracked(root: Path, path: str) -> TrackedFile:
    data = (root / path).read_bytes()
    return TrackedFile(
        path=path, digest="sha256:" + hashlib.sha256(data).hexdigest(), size=len(data)
    )


def make_project(
    root: Path, files: dict[str, bytes] | None = None, *, unique: bool = True, project: str = "demo"
) -> Registry:
    """Write `files` under `root` and return a registry with one model `sir` tracking them.

    `unique=True` adds a random file so the blobs of one test never collide with another's in a
    shared registry (a test that corrupts a blob must not corrupt someone else's).
    """
    files = dict(DEFAULT_FILES if files is None else files)
    if unique:
        files["data/nonce.bin"] = os.urandom(32)
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    return registry_for(root, sorted(files), project=project)


def registry_for(root: Path, paths: list[str], *, project: str = "demo") -> Registry:
    code = [tracked(root, p) for p in paths if p.endswith(".py")]
    data = [tracked(root, p) for p in paths if not p.endswith(".py")]
    entry = ModelEntry(
        id="sir",
        entrypoint="model:SIR",
        path="model.py",
        code=code,
        data=data,
        outputs=["prevalence"],
        scenarios=["lockdown"],
    )
    return Registry(project=project, models={"sir": entry})


def write_big_file(path: Path, size: int) -> str:
    """Write `size` random bytes in 1 MiB pieces (never whole in memory); return its digest."""
    h = hashlib.sha256()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 1 << 20))
            h.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return "sha256:" + h.hexdigest()
