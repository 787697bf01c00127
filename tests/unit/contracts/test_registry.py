"""Model registry: safe paths, model digests, registry invariants."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from modelops_contracts import (
    InvalidMessage,
    ModelEntry,
    Registry,
    TrackedFile,
    check_relative_path,
    decode_message,
    model_digest,
)

D1, D2, D3 = ("sha256:" + c * 64 for c in "123")


def _entry(**overrides: Any) -> ModelEntry:
    fields: dict[str, Any] = {
        "id": "sir",
        "entrypoint": "model:SIR",
        "path": "model.py",
        "code": [
            TrackedFile(path="model.py", digest=D1, size=10),
            TrackedFile(path="sir/core.py", digest=D2, size=5),
        ],
        "data": [TrackedFile(path="data/pop.csv", digest=D3, size=7)],
    }
    fields.update(overrides)
    return ModelEntry(**fields)


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("../x", "contains '..'"),
        ("a/../b", "contains '..'"),
        ("a/..", "contains '..'"),
        ("..", "contains '..'"),
        ("/abs", "is absolute"),
        ("/", "is absolute"),
        ("C:/x", "is absolute"),
        ("c:x", "is absolute"),
        ("a//b", "has an empty or '.' segment"),
        ("a/", "has an empty or '.' segment"),
        ("./a", "has an empty or '.' segment"),
        ("a/./b", "has an empty or '.' segment"),
        ("a\\b", "contains a backslash"),
        ("..\\x", "contains a backslash"),
        ("a\x00b", "contains a NUL byte"),
        ("", "is empty"),
    ],
)
def test_unsafe_paths_are_refused_naming_the_field(path: str, problem: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        check_relative_path(path, field="code.0.path")
    assert info.value.field == "code.0.path"
    assert problem in str(info.value)
    assert info.value.hint


@pytest.mark.parametrize(
    "path", ["model.py", "a/b/c.py", "data/pop.csv", "..hidden", "a..b/c", ".env", "modèle.py"]
)
def test_safe_paths_are_accepted(path: str) -> None:
    assert check_relative_path(path) == path


@pytest.mark.parametrize("path", ["../x", "/abs", "a/../b", "a//b", "a\\b"])
def test_unsafe_paths_are_refused_when_a_registration_is_decoded(path: str) -> None:
    entry = msgspec.to_builtins(_entry())
    entry["data"][0]["path"] = path
    raw = json.dumps(
        {
            "type": "modelops.cmd.register_model",
            "correlation_id": "c",
            "project": "p",
            "model": entry,
        }
    )
    with pytest.raises(InvalidMessage) as info:
        decode_message(raw)
    assert info.value.field == "model.data.0.path"


def test_tracked_file_checks_digest_and_size() -> None:
    with pytest.raises(ValueError, match="not sha256"):
        TrackedFile(path="a.py", digest="sha256:abc", size=1)
    with pytest.raises(ValueError, match="not sha256"):
        TrackedFile(path="a.py", digest=D1 + "\n", size=1)
    with pytest.raises(ValueError, match="outside"):
        TrackedFile(path="a.py", digest=D1, size=-1)
    with pytest.raises(InvalidMessage):
        TrackedFile(path="../a.py", digest=D1, size=1)


def test_model_digest_changes_when_a_file_digest_changes() -> None:
    base = _entry()
    changed = _entry(data=[TrackedFile(path="data/pop.csv", digest=D1, size=7)])
    assert base.digest != changed.digest
    assert base.digest.startswith("sha256:") and len(base.digest) == 71


def test_model_digest_ignores_file_order_and_sizes() -> None:
    base = _entry()
    reordered = _entry(code=list(reversed(base.code)))
    resized = _entry(
        code=[TrackedFile(path=f.path, digest=f.digest, size=f.size + 1) for f in base.code]
    )
    assert reordered.digest == base.digest == resized.digest


def test_model_digest_covers_entrypoint_paths_and_code_vs_data() -> None:
    base = _entry()
    variants = [
        _entry(entrypoint="model:SEIR"),
        _entry(entrypoint="model:SIR/lockdown"),
        _entry(code=[base.code[0], TrackedFile(path="sir/other.py", digest=D2, size=5)]),
        _entry(code=[*base.code, *base.data], data=[]),
        _entry(data=[]),
    ]
    digests = {v.digest for v in variants} | {base.digest}
    assert len(digests) == len(variants) + 1


def test_model_entry_digest_is_the_hashing_function() -> None:
    e = _entry()
    expected = model_digest(
        entrypoint=e.entrypoint,
        code=[(f.path, f.digest) for f in e.code],
        data=[(f.path, f.digest) for f in e.data],
    )
    assert e.digest == expected


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"id": "-bad"}, "model id"),
        ({"id": "sir\n"}, "model id"),
        ({"entrypoint": "model"}, "no ':Class' part"),
        ({"path": "other.py"}, "must be among its code files"),
        ({"path": "../model.py"}, "contains '..'"),
        ({"data": [TrackedFile(path="model.py", digest=D1, size=10)]}, "more than once"),
    ],
)
def test_model_entry_invariants(overrides: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(")):
        _entry(**overrides)


def test_registry_keys_and_shared_files() -> None:
    a = _entry()
    b = _entry(id="seir", entrypoint="model:SEIR")
    reg = Registry(project="demo").with_model(a).with_model(b)
    assert list(reg.models) == ["sir", "seir"]
    assert list(reg.files()) == ["data/pop.csv", "model.py", "sir/core.py"]
    with pytest.raises(ValueError, match="differs from the model's id"):
        Registry(models={"other": a})
    clash = _entry(id="seir", data=[TrackedFile(path="data/pop.csv", digest=D1, size=7)])
    with pytest.raises(ValueError, match="two models with different digests"):
        reg.with_model(clash)


def test_registry_round_trips() -> None:
    reg = Registry(project="demo", models={"sir": _entry()})
    back = msgspec.json.decode(msgspec.json.encode(reg), type=Registry)
    assert back == reg
    assert back.models["sir"].digest == reg.models["sir"].digest
