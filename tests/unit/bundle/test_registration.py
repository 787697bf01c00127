"""register_model on a small real project: files, ignores, safety, determinism, concurrency."""

from __future__ import annotations

import multiprocessing
import os
import re
from pathlib import Path

import pytest

from modelops_bundle import hashing
from modelops_bundle.digest_cache import DigestCache
from modelops_bundle.errors import ModelNotFound, ProjectError, UnsafePath
from modelops_bundle.hashing import compute_file_digest
from modelops_bundle.registration import register_model
from modelops_bundle.registry_file import load_registry, registry_path
from modelops_contracts import InvalidEntrypoint

from .example_project import FILES, age, imported_from, make_project

EXPECTED_DATA = ["data/nested/contacts.csv", "data/nested/deeper/ages.csv", "data/params.csv"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "proj")


def test_registers_code_data_and_declarations(project: Path) -> None:
    result = register_model(project, "model:StochasticSIR", "src/model.py", data=["data/"])
    entry = result.entry
    assert imported_from(project) == []  # the model file raises on import: never imported
    assert entry.id == "StochasticSIR" and entry.entrypoint == "model:StochasticSIR"
    assert entry.path == "src/model.py"
    assert [f.path for f in entry.code] == ["src/model.py", "src/sir_utils.py"]
    # raw/ and *.tmp by .modelopsignore; .DS_Store and __pycache__/ built in
    assert [f.path for f in entry.data] == EXPECTED_DATA
    for f in entry.files:
        assert f.digest == compute_file_digest(project / f.path)
        assert f.size == len(FILES[f.path])
    assert (entry.outputs, entry.scenarios, entry.parameters) == (
        ["incidence", "prevalence"],
        ["baseline", "lockdown"],
        ["beta", "gamma"],
    )
    assert result.files == 5 and result.bytes == sum(len(FILES[f.path]) for f in entry.files)
    assert (result.hashed, result.cached, result.changed, result.previous) == (5, 0, True, None)
    assert result.scan.external == ("numpy",)
    assert load_registry(project).models == {"StochasticSIR": entry}
    text = registry_path(project).read_text()
    assert str(project) not in text and "/tmp" not in text  # nothing machine-specific
    assert "cache/" in (project / ".modelops-bundle/.gitignore").read_text()


def test_same_content_gives_identical_registry_bytes(tmp_path: Path) -> None:
    a = make_project(tmp_path / "a")
    b = make_project(tmp_path / "b", reverse=True)  # files created in the other order
    register_model(a, "model:StochasticSIR", "src/model.py", data=["data/"])
    register_model(
        a, "model:StochasticSIR", "src/model.py", model_id="Second", data=["data/params.csv"]
    )
    register_model(
        b, "model:StochasticSIR", "src/model.py", model_id="Second", data=["data/params.csv"]
    )
    register_model(
        b, "model:StochasticSIR", str(b / "src/model.py"), data=[b / "data/nested", "data"]
    )
    assert registry_path(a).read_bytes() == registry_path(b).read_bytes()


def test_re_registering_identical_content_is_a_noop(project: Path) -> None:
    register_model(project, "model:StochasticSIR", "src/model.py", data=["data/"])
    before = registry_path(project).stat()
    again = register_model(project, "model:StochasticSIR", "src/model.py", data=["data/"])
    after = registry_path(project).stat()
    assert not again.changed and again.previous == again.entry
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


def test_registration_uses_the_digest_cache(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    age(project)
    register_model(project, "model:StochasticSIR", "src/model.py", data=["data/"])
    reads: list[int] = []
    real = hashing.hash_open_file
    monkeypatch.setattr(
        hashing, "hash_open_file", lambda fh, **kw: reads.append(1) or real(fh, **kw)
    )
    again = register_model(project, "model:StochasticSIR", "src/model.py", data=["data/"])
    assert reads == [] and (again.hashed, again.cached) == (0, 5)


def test_changed_data_file_changes_digest(project: Path) -> None:
    first = register_model(project, "model:StochasticSIR", "src/model.py", data=["data/"]).entry
    (project / "data/params.csv").write_bytes(b"beta,gamma\n0.9,0.1\n")
    second = register_model(project, "model:StochasticSIR", "src/model.py", data=["data/"])
    assert second.changed and second.previous == first
    assert second.entry.digest != first.digest


def test_explicit_ignored_file_is_tracked_and_extra_code_added(project: Path) -> None:
    (project / "scripts").mkdir()
    (project / "scripts/prep.py").write_text("x = 1\n")
    (project / "scripts/__pycache__").mkdir()
    (project / "scripts/__pycache__/prep.cpython-311.pyc").write_bytes(b"x")
    entry = register_model(
        project, "model:StochasticSIR", "src/model.py", data=["data/scratch.tmp"], code=["scripts"]
    ).entry
    assert [f.path for f in entry.data] == ["data/scratch.tmp"]
    assert [f.path for f in entry.code] == ["scripts/prep.py", "src/model.py", "src/sir_utils.py"]


def test_code_files_are_not_duplicated_as_data(project: Path) -> None:
    entry = register_model(project, "model:StochasticSIR", "src/model.py", data=["src"]).entry
    assert [f.path for f in entry.data] == ["src/unused.py"]


def test_paths_relative_to_a_base_folder(project: Path) -> None:
    entry = register_model(
        project,
        "model:StochasticSIR",
        "model.py",
        data=["../data/params.csv"],
        base=project / "src",
    ).entry
    assert entry.path == "src/model.py" and [f.path for f in entry.data] == ["data/params.csv"]


@pytest.mark.parametrize("bad", ["../outside", "/etc/hostname"])
def test_data_outside_the_project_is_unsafe(project: Path, bad: str) -> None:
    (project.parent / "outside").mkdir(exist_ok=True)
    with pytest.raises(UnsafePath, match="outside the project"):
        register_model(project, "model:StochasticSIR", "src/model.py", data=[bad])
    assert not registry_path(project).exists()


def test_symlinks_escaping_the_project_are_unsafe(project: Path) -> None:
    secret = project.parent / "secret.txt"
    secret.write_text("s")
    (project / "data/leak.txt").symlink_to(secret)
    with pytest.raises(UnsafePath, match=re.escape("'data/leak.txt' resolves outside the project")):
        register_model(project, "model:StochasticSIR", "src/model.py", data=["data"])
    with pytest.raises(UnsafePath):
        register_model(project, "model:StochasticSIR", "src/model.py", data=["data/leak.txt"])
    (project / "linkdir").symlink_to(project.parent, target_is_directory=True)
    with pytest.raises(UnsafePath):
        register_model(project, "model:StochasticSIR", "src/model.py", data=["linkdir/secret.txt"])
    # listed in .modelopsignore, the link is skipped rather than refused
    with (project / ".modelopsignore").open("a") as fh:
        fh.write("leak.txt\n")
    entry = register_model(project, "model:StochasticSIR", "src/model.py", data=["data"]).entry
    assert [f.path for f in entry.data] == EXPECTED_DATA


def test_file_name_that_is_not_a_safe_path_is_refused(project: Path) -> None:
    (project / "data/a\\b.csv").write_text("x")
    with pytest.raises(UnsafePath, match="backslash"):
        register_model(project, "model:StochasticSIR", "src/model.py", data=["data"])


def test_symlinks_inside_the_project_are_followed_once(project: Path) -> None:
    (project / "data/alias.csv").symlink_to(project / "data/params.csv")
    (project / "data/nested/loop").symlink_to(project / "data", target_is_directory=True)
    result = register_model(project, "model:StochasticSIR", "src/model.py", data=["data"])
    paths = [f.path for f in result.entry.data]
    assert "data/alias.csv" in paths and not any("loop/loop" in p for p in paths)


def test_model_and_option_errors(project: Path) -> None:
    with pytest.raises(ModelNotFound, match="classes found: StochasticSIR"):
        register_model(project, "model:Missing", "src/model.py")
    with pytest.raises(ModelNotFound, match="does not exist"):
        register_model(project, "model:StochasticSIR", "src/nope.py")
    with pytest.raises(
        ProjectError, match=re.escape("cannot be imported from file 'src/model.py'")
    ):
        register_model(project, "sir:StochasticSIR", "src/model.py")
    with pytest.raises(ProjectError, match="names scenario 'lockdown'"):
        register_model(project, "model:StochasticSIR/lockdown", "src/model.py")
    with pytest.raises(InvalidEntrypoint):
        register_model(project, "model.StochasticSIR", "src/model.py")
    with pytest.raises(ProjectError, match="data path 'nope' does not exist"):
        register_model(project, "model:StochasticSIR", "src/model.py", data=["nope"])
    with pytest.raises(ProjectError, match="model id"):
        register_model(project, "model:StochasticSIR", "src/model.py", model_id="bad id!")
    with pytest.raises(UnsafePath, match=re.escape("inside .modelops-bundle")):
        register_model(project, "model:StochasticSIR", "src/model.py", data=[".modelops-bundle"])
    assert load_registry(project).models == {}


def test_shared_file_update_refreshes_other_models(project: Path) -> None:
    register_model(project, "model:StochasticSIR", "src/model.py", model_id="A")
    b = register_model(project, "model:StochasticSIR", "src/model.py", model_id="B").entry
    (project / "src/sir_utils.py").write_text("def step(p, s):\n    return [0]\n")
    result = register_model(project, "model:StochasticSIR", "src/model.py", model_id="A")
    assert result.also_updated == ("B",)
    reg = load_registry(project)
    assert reg.models["B"].digest != b.digest
    assert reg.models["A"].files == reg.models["B"].files


def _register_many(root: str, worker: int, start: multiprocessing.synchronize.Event) -> None:
    start.wait(10)
    cache = DigestCache(root, persist=False)
    for i in range(6):
        register_model(
            root, "model:StochasticSIR", "src/model.py", model_id=f"W{worker}_{i}", cache=cache
        )


def test_concurrent_registrations_are_all_kept(project: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    procs = [ctx.Process(target=_register_many, args=(str(project), w, start)) for w in range(2)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert sorted(load_registry(project).models) == sorted(
        f"W{w}_{i}" for w in range(2) for i in range(6)
    )


def test_special_files_are_refused_when_named_and_skipped_in_folders(project: Path) -> None:
    os.mkfifo(project / "data/pipe")  # hashing it would block forever
    with pytest.raises(ProjectError, match="not a regular file"):
        register_model(project, "model:StochasticSIR", "src/model.py", data=["data/pipe"])
    result = register_model(project, "model:StochasticSIR", "src/model.py", data=["data"])
    assert [f.path for f in result.entry.data] == EXPECTED_DATA
    assert any("data/pipe: not a regular file" in w for w in result.warnings)
