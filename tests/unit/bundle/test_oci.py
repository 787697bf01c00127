"""Bundle manifest/config composition and parsing (pure, no I/O)."""

from __future__ import annotations

import json

import msgspec
import pytest

from modelops_bundle.errors import BundleError, ModelNotFound, UnsafePath
from modelops_bundle.oci import (
    ANNOTATION_TITLE,
    BUNDLE_ARTIFACT_TYPE,
    CONFIG_MEDIA_TYPE,
    FILE_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    InvalidBundle,
    check_layers_match,
    compose_bundle,
    parse_bundle_config,
    parse_bundle_manifest,
    sha256_digest,
)
from modelops_contracts import ModelEntry, Registry, TrackedFile, canonical_bytes


def _f(path: str, n: int, size: int = 10) -> TrackedFile:
    return TrackedFile(path=path, digest=f"sha256:{n:064x}", size=size)


def _entry(mid: str, files: list[TrackedFile], *, entrypoint: str | None = None) -> ModelEntry:
    code = [f for f in files if f.path.endswith(".py")]
    data = [f for f in files if not f.path.endswith(".py")]
    return ModelEntry(
        id=mid,
        entrypoint=entrypoint or f"{mid}:Model",
        path=f"{mid}.py",
        code=code,
        data=data,
        outputs=["b", "a"],
        scenarios=["s2", "s1"],
    )


YAML = b"# registry\nversion: 1\n"


def _registry(reverse: bool = False) -> Registry:
    a = [_f("a.py", 1), _f("shared/util.py", 2), _f("data/x.csv", 3), _f("data/y.csv", 4)]
    b = [_f("b.py", 5), _f("shared/util.py", 2), _f("data/z.bin", 6)]
    if reverse:
        a, b = a[::-1], b[::-1]
        models = {"b": _entry("b", b), "a": _entry("a", a)}
    else:
        models = {"a": _entry("a", a), "b": _entry("b", b)}
    return Registry(project="demo", models=models)


def test_same_content_in_any_order_gives_the_same_digest() -> None:
    one = compose_bundle(_registry(), registry_yaml=YAML)
    two = compose_bundle(_registry(reverse=True), registry_yaml=YAML)
    assert one.manifest_bytes == two.manifest_bytes
    assert one.manifest_digest == two.manifest_digest
    assert one.config_digest == two.config_digest
    assert one.manifest_digest == sha256_digest(one.manifest_bytes)


def test_one_changed_file_digest_changes_the_bundle_digest() -> None:
    base = compose_bundle(_registry(), registry_yaml=YAML)
    reg = _registry()
    a = reg.models["a"]
    changed = _entry(
        "a", [_f("a.py", 1), _f("shared/util.py", 2), _f("data/x.csv", 99), _f("data/y.csv", 4)]
    )
    assert changed.digest != a.digest
    other = compose_bundle(reg.with_model(changed), registry_yaml=YAML)
    assert other.manifest_digest != base.manifest_digest
    assert other.models["a"] != base.models["a"]
    assert other.models["b"] == base.models["b"]


def test_registry_yaml_and_annotations_enter_the_digest() -> None:
    base = compose_bundle(_registry(), registry_yaml=YAML)
    assert (
        compose_bundle(_registry(), registry_yaml=YAML + b"#\n").manifest_digest
        != base.manifest_digest
    )
    annotated = compose_bundle(
        _registry(), registry_yaml=YAML, annotations={"org.opencontainers.image.revision": "abc"}
    )
    assert annotated.manifest_digest != base.manifest_digest


def test_manifest_is_an_oci_1_1_bundle_with_sorted_titled_layers() -> None:
    composed = compose_bundle(_registry(), registry_yaml=YAML)
    manifest = json.loads(composed.manifest_bytes)
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == MANIFEST_MEDIA_TYPE
    assert manifest["artifactType"] == BUNDLE_ARTIFACT_TYPE
    assert manifest["config"] == {
        "mediaType": CONFIG_MEDIA_TYPE,
        "digest": composed.config_digest,
        "size": len(composed.config_bytes),
    }
    titles = [layer["annotations"][ANNOTATION_TITLE] for layer in manifest["layers"]]
    assert titles == sorted(titles) == [
        "a.py", "b.py", "data/x.csv", "data/y.csv", "data/z.bin", "shared/util.py",
    ]  # fmt: skip
    assert {layer["mediaType"] for layer in manifest["layers"]} == {FILE_MEDIA_TYPE}
    assert manifest["annotations"] == {ANNOTATION_TITLE: "demo"}
    assert b"created" not in composed.manifest_bytes
    # canonical JSON: what we hash is exactly the canonical encoding of what we mean
    assert canonical_bytes(manifest) == composed.manifest_bytes


def test_index_holds_files_models_and_registry_yaml() -> None:
    composed = compose_bundle(_registry(), registry_yaml=YAML)
    index = parse_bundle_config(composed.config_bytes)
    assert index == composed.index
    assert [f.path for f in index.files] == sorted(f.path for f in index.files)
    assert index.registry_yaml == YAML.decode()
    a = index.models["a"]
    assert a.digest == _registry().models["a"].digest
    assert a.code == ["a.py", "shared/util.py"] and a.data == ["data/x.csv", "data/y.csv"]
    assert a.outputs == ["a", "b"] and a.scenarios == ["s1", "s2"]
    check_layers_match(parse_bundle_manifest(composed.manifest_bytes), index)


def test_timestamp_annotation_is_refused() -> None:
    with pytest.raises(BundleError, match="timestamp"):
        compose_bundle(
            _registry(), registry_yaml=YAML, annotations={"org.opencontainers.image.created": "now"}
        )


def test_empty_registry_is_refused() -> None:
    with pytest.raises(BundleError, match="no registered models") as info:
        compose_bundle(Registry(project="empty"), registry_yaml=b"")
    assert "register-model" in str(info.value)


def _config_with(**changes: object) -> bytes:
    doc = msgspec.to_builtins(compose_bundle(_registry(), registry_yaml=YAML).index)
    doc.update(changes)
    return json.dumps(doc).encode()


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/../../x", "a//b", "./a", "a\\b"])
def test_unsafe_paths_in_an_index_are_refused(bad: str) -> None:
    files = [{"path": bad, "digest": f"sha256:{1:064x}", "size": 1}]
    with pytest.raises(UnsafePath, match="unsafe path"):
        parse_bundle_config(_config_with(files=files, models={}))


@pytest.mark.parametrize(
    ("files", "match"),
    [
        (["a", "a"], "twice"),
        (["a", "a/b"], "both a file and a folder"),
        ([".modelops-bundle-index.json"], "reserves"),
    ],
)
def test_inconsistent_trees_are_refused(files: list[str], match: str) -> None:
    entries = [{"path": p, "digest": f"sha256:{1:064x}", "size": 1} for p in files]
    with pytest.raises(InvalidBundle, match=match):
        parse_bundle_config(_config_with(files=entries, models={}))


def test_model_using_a_file_outside_the_bundle_is_refused() -> None:
    doc = json.loads(_config_with())
    doc["files"] = [f for f in doc["files"] if f["path"] != "data/x.csv"]
    with pytest.raises(InvalidBundle, match=r"data/x\.csv"):
        parse_bundle_config(json.dumps(doc).encode())


@pytest.mark.parametrize("data", [b"not json", b"{}", b'{"project": 1, "files": [], "models": {}}'])
def test_malformed_index_is_invalid_bundle(data: bytes) -> None:
    with pytest.raises(InvalidBundle):
        parse_bundle_config(data)


def test_manifest_of_another_artifact_is_refused() -> None:
    manifest = json.loads(compose_bundle(_registry(), registry_yaml=YAML).manifest_bytes)
    manifest["artifactType"] = "application/vnd.other"
    with pytest.raises(InvalidBundle, match="not a modelops bundle"):
        parse_bundle_manifest(json.dumps(manifest).encode())


def test_manifest_with_escaping_title_is_refused() -> None:
    manifest = json.loads(compose_bundle(_registry(), registry_yaml=YAML).manifest_bytes)
    manifest["layers"][0]["annotations"][ANNOTATION_TITLE] = "../../evil.py"
    with pytest.raises(UnsafePath):
        parse_bundle_manifest(json.dumps(manifest).encode())


def test_layers_must_match_the_index() -> None:
    composed = compose_bundle(_registry(), registry_yaml=YAML)
    manifest = json.loads(composed.manifest_bytes)
    manifest["layers"][0]["digest"] = f"sha256:{7:064x}"
    with pytest.raises(InvalidBundle, match=r"disagree on a\.py"):
        check_layers_match(parse_bundle_manifest(json.dumps(manifest).encode()), composed.index)


def test_model_for_finds_entrypoints_and_checks_scenarios() -> None:
    index = compose_bundle(_registry(), registry_yaml=YAML).index
    assert index.model_for("a:Model").id == "a"
    assert index.model_for("b:Model/s1").id == "b"
    with pytest.raises(ModelNotFound, match="no scenario 'nope'") as info:
        index.model_for("b:Model/nope")
    assert "s1, s2" in str(info.value)
    with pytest.raises(ModelNotFound, match="c:Model") as info:
        index.model_for("c:Model")
    assert "a:Model, b:Model" in str(info.value)
