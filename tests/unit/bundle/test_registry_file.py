"""registry.yaml: canonical bytes, safe decoding of hand edits, atomic locked updates."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modelops_bundle.errors import ProjectError, UnsafePath
from modelops_bundle.registry_file import (
    dump_registry,
    load_registry,
    parse_registry,
    registry_path,
    save_registry,
    update_registry,
)
from modelops_contracts import ModelEntry, Registry, TrackedFile

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def _entry(mid: str, *, reverse: bool = False) -> ModelEntry:
    code = [
        TrackedFile(path="src/model.py", digest=D1, size=10),
        TrackedFile(path="src/a.py", digest=D2, size=3),
    ]
    data = [
        TrackedFile(path="data/z.csv", digest=D2, size=3),
        TrackedFile(path="data/b.csv", digest=D1, size=10),
    ]
    if reverse:
        code, data = code[::-1], data[::-1]
    return ModelEntry(
        id=mid,
        entrypoint=f"model:{mid}",
        path="src/model.py",
        code=code,
        data=data,
        outputs=["inc"],
    )


def test_dump_is_canonical_whatever_the_order() -> None:
    a = Registry(models={"B": _entry("B"), "A": _entry("A")})
    b = Registry(models={"A": _entry("A", reverse=True), "B": _entry("B", reverse=True)})
    assert dump_registry(a) == dump_registry(b)
    text = dump_registry(a).decode()
    assert text.index("  A:") < text.index("  B:")
    assert text.index("data/b.csv") < text.index("data/z.csv")
    assert text.index("- path: src/a.py") < text.index("- path: src/model.py")
    parsed = parse_registry(dump_registry(a))
    assert dump_registry(parsed) == dump_registry(a)
    assert [f.path for f in parsed.models["A"].code] == ["src/a.py", "src/model.py"]
    assert parsed.models["A"].digest == _entry("A").digest


def test_c_and_python_dumpers_give_the_same_bytes() -> None:
    reg = Registry(models={"SIR": _entry("SIR")})
    assert dump_registry(reg, dumper=yaml.SafeDumper) == dump_registry(reg, dumper=yaml.CSafeDumper)


def test_missing_or_empty_file_is_an_empty_registry(tmp_path: Path) -> None:
    assert load_registry(tmp_path) == Registry()
    registry_path(tmp_path).parent.mkdir()
    registry_path(tmp_path).write_text("")
    assert load_registry(tmp_path) == Registry()


def test_save_is_a_noop_for_identical_bytes(tmp_path: Path) -> None:
    reg = Registry(models={"SIR": _entry("SIR")})
    assert save_registry(tmp_path, reg)
    before = registry_path(tmp_path).stat()
    assert not save_registry(tmp_path, Registry(models={"SIR": _entry("SIR", reverse=True)}))
    after = registry_path(tmp_path).stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


def _hand_edited(tmp_path: Path, old: str, new: str) -> Path:
    save_registry(tmp_path, Registry(models={"SIR": _entry("SIR")}))
    path = registry_path(tmp_path)
    path.write_text(path.read_text().replace(old, new, 1))
    return path


@pytest.mark.parametrize("bad", ["../x.csv", "/etc/passwd", "data/../../x", "C:/x"])
def test_unsafe_path_in_hand_edited_file_is_refused_at_load(tmp_path: Path, bad: str) -> None:
    path = _hand_edited(tmp_path, "path: data/b.csv", f"path: {bad}")
    with pytest.raises(UnsafePath) as err:
        load_registry(tmp_path)
    assert str(path) in str(err.value) and "'SIR'" in str(err.value) and bad in str(err.value)


def test_unsafe_model_path_is_refused_at_load(tmp_path: Path) -> None:
    _hand_edited(tmp_path, "    path: src/model.py", "    path: ../model.py")
    with pytest.raises(UnsafePath, match="'SIR'"):
        load_registry(tmp_path)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (f"digest: {D1}", "digest: sha256:xyz", "model 'SIR' is invalid"),
        ("size: 10", "size: -1", "model 'SIR' is invalid"),
        ("  SIR:\n    id: SIR", "  SIR:\n    id: Other", "differs from the model's id"),
        ("version: 1", "version: 7", "is invalid"),
        ("models:", "models: [", "not valid YAML"),
    ],
)
def test_other_bad_edits_are_project_errors_naming_the_file(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    path = _hand_edited(tmp_path, old, new)
    with pytest.raises(ProjectError, match=message) as err:
        load_registry(tmp_path)
    assert str(path) in str(err.value)
    assert not isinstance(err.value, UnsafePath)


def test_not_a_mapping_is_refused(tmp_path: Path) -> None:
    registry_path(tmp_path).parent.mkdir()
    registry_path(tmp_path).write_text("- a\n- b\n")
    with pytest.raises(ProjectError, match="must be a mapping"):
        load_registry(tmp_path)


def test_update_registry_applies_the_change_and_reports_writes(tmp_path: Path) -> None:
    reg, written = update_registry(tmp_path, lambda r: r.with_model(_entry("SIR")))
    assert written and reg.models["SIR"] == _entry("SIR")
    reg2, written2 = update_registry(tmp_path, lambda r: r.with_model(_entry("SIR", reverse=True)))
    assert not written2 and load_registry(tmp_path) == reg2
    assert not list(registry_path(tmp_path).parent.glob("*.tmp"))
