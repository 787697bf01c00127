"""--bundle spellings: full reference, bare digest, tag."""

from __future__ import annotations

import pytest

from modelops_cli.errors import ConfigError
from modelops_cli.refs import ref_host, resolve_bundle
from modelops_contracts import InvalidBundleRef

DIGEST = "sha256:" + "ab" * 32


def test_layout_store_refs_use_the_local_host() -> None:
    assert ref_host("oci-layout:/tmp/x/oci") == "local"
    assert ref_host("127.0.0.1:5000") == "127.0.0.1:5000"
    assert ref_host("https://registry.example.org") == "registry.example.org"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (DIGEST, f"local/sir@{DIGEST}"),
        (f"  {DIGEST}\n", f"local/sir@{DIGEST}"),
        (f"ghcr.io/lab/sir@{DIGEST}", f"ghcr.io/lab/sir@{DIGEST}"),
        ("latest", "local/sir:latest"),
        ("v1.2", "local/sir:v1.2"),
        ("ghcr.io/lab/sir:v1", "ghcr.io/lab/sir:v1"),
    ],
)
def test_resolve_bundle(given: str, expected: str) -> None:
    assert resolve_bundle(given, registry="oci-layout:/x/oci", repository="sir") == expected


def test_a_digest_against_a_registry_takes_its_host() -> None:
    ref = resolve_bundle(DIGEST, registry="127.0.0.1:5000", repository="lab/sir")
    assert ref == f"127.0.0.1:5000/lab/sir@{DIGEST}"


@pytest.mark.parametrize("bad", ["sha256:abc", "sha256:" + "AB" * 32, "not a tag!"])
def test_bad_spellings_are_refused_with_a_hint(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_bundle(bad, registry="oci-layout:/x", repository="sir")
    assert info.value.hint


def test_a_bad_full_reference_names_the_problem() -> None:
    with pytest.raises(InvalidBundleRef, match="not sha256"):
        resolve_bundle("local/sir@sha256:xyz", registry="oci-layout:/x", repository="sir")
