"""Project root discovery, safe relative paths, atomic writes and ignore rules."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from modelops_bundle.errors import ProjectError, UnsafePath
from modelops_bundle.ignore import load_ignore_rules
from modelops_bundle.project import (
    atomic_write_bytes,
    find_or_init_root,
    find_root,
    init_project,
    to_project_path,
)


def test_find_root_walks_up_and_init_creates_in_place(tmp_path: Path) -> None:
    deep = tmp_path / "proj/src/pkg"
    deep.mkdir(parents=True)
    with pytest.raises(ProjectError, match=re.escape("no .modelops-bundle/ folder")):
        find_root(deep)
    assert find_or_init_root(tmp_path / "proj") == (tmp_path / "proj").resolve()
    assert (tmp_path / "proj/.modelops-bundle/.gitignore").is_file()
    assert find_root(deep) == (tmp_path / "proj").resolve()


def test_init_keeps_a_users_gitignore(tmp_path: Path) -> None:
    init_project(tmp_path)
    gi = tmp_path / ".modelops-bundle/.gitignore"
    gi.write_text("mine\n")
    init_project(tmp_path)
    assert gi.read_text() == "mine\n"


def test_to_project_path(tmp_path: Path) -> None:
    root = tmp_path.resolve()
    (root / "src").mkdir()
    assert to_project_path(root, "src/model.py") == "src/model.py"
    assert to_project_path(root, "./src//x/../model.py") == "src/model.py"
    assert to_project_path(root, root / "data") == "data"
    assert to_project_path(root, "model.py", base=root / "src") == "src/model.py"
    assert to_project_path(root, ".") == ""
    with pytest.raises(UnsafePath, match="outside the project"):
        to_project_path(root, "../x")
    with pytest.raises(UnsafePath, match="backslash"):
        to_project_path(root, "a\\b")


def test_to_project_path_through_a_symlinked_root(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    assert to_project_path(real.resolve(), tmp_path / "link/data/x.csv") == "data/x.csv"


def test_atomic_write_replaces_and_skips_identical(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    assert atomic_write_bytes(path, b"one")
    assert not atomic_write_bytes(path, b"one")
    assert atomic_write_bytes(path, b"two") and path.read_bytes() == b"two"
    assert sorted(os.listdir(tmp_path)) == ["f.txt"]
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def test_ignore_rules(tmp_path: Path) -> None:
    (tmp_path / ".modelopsignore").write_text("# comment\n*.log\noutputs/\n!keep.log\n")
    rules = load_ignore_rules(tmp_path)
    assert rules.is_ignored("a/b.log") and not rules.is_ignored("keep.log")
    assert rules.is_ignored("data/outputs", is_dir=True) and not rules.is_ignored("data/outputs")
    for builtin, is_dir in [
        ("__pycache__", True),
        ("x.pyc", False),
        (".git", True),
        (".venv", True),
        (".modelops", True),
        (".modelops-bundle", True),
        ("d/.DS_Store", False),
    ]:
        assert rules.is_ignored(builtin, is_dir=is_dir), builtin
    assert rules.reason("a/b.log") == "'*.log' (.modelopsignore)"
    assert rules.reason("src/__pycache__", is_dir=True) == "'__pycache__/' (built-in)"
    assert rules.reason("data.csv") is None
    assert not load_ignore_rules(tmp_path / "nowhere").is_ignored("a.log")
