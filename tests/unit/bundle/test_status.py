"""Status per model (current / modified / missing / untracked / pushed) and the build's check."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from modelops_bundle import hashing
from modelops_bundle.errors import FilesChanged, ProjectError
from modelops_bundle.pushes import KEEP, latest_push, push_history, record_push
from modelops_bundle.registration import register_model
from modelops_bundle.registry_file import load_registry
from modelops_bundle.status import check_unchanged, model_status
from modelops_contracts import InvalidBundleRef

from .example_project import age, make_project

REF = "127.0.0.1:5000/models/sir@sha256:" + "a" * 64


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = make_project(tmp_path / "proj")
    register_model(root, "model:StochasticSIR", "src/model.py", data=["data/"])
    return root


def _files(report, model: str = "StochasticSIR") -> dict[str, str]:  # type: ignore[no-untyped-def]
    (status,) = [m for m in report.models if m.id == model]
    return {f.path: f.state for f in status.files}


def test_freshly_registered_project_is_clean(project: Path) -> None:
    report = model_status(project)
    assert report.clean
    (m,) = report.models
    assert m.untracked == () and m.pushed == "unknown"
    assert m.digest == load_registry(project).models["StochasticSIR"].digest
    assert set(_files(report).values()) == {"current"}
    check_unchanged(project, load_registry(project))


def test_modified_same_size_file_is_hashed_and_reported(project: Path) -> None:
    registered = load_registry(project).models["StochasticSIR"]
    (project / "data/params.csv").write_bytes(b"beta,gamma\n0.9,0.1\n")  # same length
    report = model_status(project)
    assert _files(report)["data/params.csv"] == "modified"
    (f,) = [f for f in report.models[0].files if f.path == "data/params.csv"]
    assert f.current_digest is not None and f.current_digest != f.digest
    assert f.digest == next(t.digest for t in registered.data if t.path == "data/params.csv")
    assert not report.clean and [c.path for c in report.models[0].changed] == ["data/params.csv"]


def test_size_change_is_modified_without_reading(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    age(project)
    model_status(project)  # warm the cache with trusted entries
    (project / "data/nested/contacts.csv").write_bytes(b"longer content than before\n")
    reads: list[int] = []
    real = hashing.hash_open_file
    monkeypatch.setattr(
        hashing, "hash_open_file", lambda fh, **kw: reads.append(1) or real(fh, **kw)
    )
    report = model_status(project)
    assert _files(report)["data/nested/contacts.csv"] == "modified"
    assert reads == []  # unchanged files came from the cache, the changed one differs in size


def test_missing_file(project: Path) -> None:
    (project / "src/sir_utils.py").unlink()
    report = model_status(project)
    assert _files(report)["src/sir_utils.py"] == "missing"
    (f,) = [f for f in report.models[0].files if f.path == "src/sir_utils.py"]
    assert f.kind == "code" and f.current_digest is None


def test_untracked_files_in_data_folders(project: Path) -> None:
    (project / "data/new.csv").write_text("n")
    (project / "data/brand_new_dir").mkdir()
    (project / "data/brand_new_dir/x.csv").write_text("x")
    (project / "data/ignored.tmp").write_text("t")  # *.tmp in .modelopsignore
    (project / "README.md").write_text("outside the data folders: not reported")
    (m,) = model_status(project).models
    assert m.untracked == ("data/brand_new_dir/x.csv", "data/new.csv")
    assert m.clean  # untracked files do not make tracked ones dirty
    assert model_status(project, untracked=False).models[0].untracked == ()


def test_push_state_from_the_latest_bundle(project: Path) -> None:
    digest = load_registry(project).models["StochasticSIR"].digest
    other = "sha256:" + "b" * 64
    assert (
        model_status(project, latest_bundle={"StochasticSIR": digest}).models[0].pushed == "pushed"
    )
    assert (
        model_status(project, latest_bundle={"StochasticSIR": other}).models[0].pushed == "changed"
    )
    assert model_status(project, latest_bundle={}).models[0].pushed == "not_pushed"
    assert latest_push(project) is None
    record_push(project, REF, {"StochasticSIR": digest})
    push = latest_push(project)
    assert push is not None and push.bundle_ref == REF
    assert model_status(project, latest_bundle=push.models).models[0].pushed == "pushed"


def test_check_unchanged_lists_changed_files(project: Path) -> None:
    (project / "data/params.csv").write_bytes(b"changed and longer\n")
    (project / "data/nested/deeper/ages.csv").unlink()
    with pytest.raises(FilesChanged) as err:
        check_unchanged(project, load_registry(project))
    assert err.value.files == [
        ("data/nested/deeper/ages.csv", "missing"),
        ("data/params.csv", "modified"),
    ]
    assert "StochasticSIR" in str(err.value) and "data/params.csv (modified)" in str(err.value)


def test_push_history_is_capped_and_validated(project: Path) -> None:
    digest = load_registry(project).models["StochasticSIR"].digest
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for i in range(KEEP + 3):
        record_push(project, REF, {f"m{i}": digest}, now=t0 + dt.timedelta(minutes=i))
    history = push_history(project)
    assert len(history) == KEEP and history[-1].models == {f"m{KEEP + 2}": digest}
    assert history[-1].pushed_at == "2026-01-01T00:52:00+00:00"
    with pytest.raises(InvalidBundleRef):
        record_push(project, "localhost:5000/models/sir:latest", {})
    with pytest.raises(ProjectError, match="cannot record push"):
        record_push(project, REF, {"m": "sha256:nothex"})
    (project / ".modelops-bundle/pushes.json").write_text("{broken")
    with pytest.raises(ProjectError, match=re.escape("pushes.json is unreadable")):
        latest_push(project)
