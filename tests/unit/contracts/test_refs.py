"""Bundle references: `host[:port]/repo[/more]@sha256:<64 hex>`, pinned by digest only."""

from __future__ import annotations

import re

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelops_contracts import BundleRef, InvalidBundleRef, InvalidMessage, parse_bundle_ref
from modelops_contracts.refs import BUNDLE_REF_PATTERN, DIGEST_PATTERN, Digest

HEX = "0123456789abcdef" * 4
DIGEST = f"sha256:{HEX}"


@pytest.mark.parametrize(
    ("text", "host", "repo"),
    [
        (f"localhost:5000/models/sir@{DIGEST}", "localhost:5000", "models/sir"),
        (f"127.0.0.1:65535/sir@{DIGEST}", "127.0.0.1:65535", "sir"),
        (f"ghcr.io/org/team/models/sir@{DIGEST}", "ghcr.io", "org/team/models/sir"),
        (
            f"registry.example.com/a.b/c_d/e__f/g--h@{DIGEST}",
            "registry.example.com",
            "a.b/c_d/e__f/g--h",
        ),
        (f"my-registry/sir@{DIGEST}", "my-registry", "sir"),
        (f"Reg.Example.COM:443/sir@{DIGEST}", "Reg.Example.COM:443", "sir"),
    ],
)
def test_valid_refs_parse_and_round_trip(text: str, host: str, repo: str) -> None:
    ref = parse_bundle_ref(text)
    assert ref == BundleRef(host=host, repository=repo, digest=DIGEST)
    assert str(ref) == text
    assert re.search(BUNDLE_REF_PATTERN, text)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (DIGEST, "is a bare digest with no host/repository"),
        ("localhost:5000/models/sir:v1", "is not pinned to a digest"),
        ("localhost:5000/models/sir", "is not pinned to a digest"),
        ("", "is not pinned to a digest"),
        ("localhost:5000/sir@sha256:abc", "has digest 'sha256:abc'"),
        (f"localhost:5000/sir@sha256:{HEX.upper()}", "which is not sha256:<64 lowercase hex>"),
        (f"localhost:5000/sir@sha512:{HEX}{HEX}", "which is not sha256:<64 lowercase hex>"),
        (f"localhost:5000/sir@{DIGEST}0", "which is not sha256:<64 lowercase hex>"),
        (f"localhost:5000/sir@{DIGEST}\n", "which is not sha256:<64 lowercase hex>"),
        (f"localhost:5000/sir@{HEX}", "which is not sha256:<64 lowercase hex>"),
        (f"sir@{DIGEST}", "has no valid host/repository before '@'"),
        (f"localhost:5000/@{DIGEST}", "has no valid host/repository before '@'"),
        (f"localhost:5000/Models/sir@{DIGEST}", "has no valid host/repository before '@'"),
        (f"localhost:5000/models//sir@{DIGEST}", "has no valid host/repository before '@'"),
        (f"localhost:5000/models/sir/@{DIGEST}", "has no valid host/repository before '@'"),
        (f"localhost:5000/models/sir:v1@{DIGEST}", "has no valid host/repository before '@'"),
        (f"localhost:port/sir@{DIGEST}", "has no valid host/repository before '@'"),
        (f"localhost:123456/sir@{DIGEST}", "has no valid host/repository before '@'"),
        (f"-bad.host/sir@{DIGEST}", "has no valid host/repository before '@'"),
        (f"https://localhost/sir@{DIGEST}", "has no valid host/repository before '@'"),
        (f" localhost/sir@{DIGEST}", "has no valid host/repository before '@'"),
    ],
)
def test_invalid_refs_name_the_problem(text: str, problem: str) -> None:
    with pytest.raises(InvalidBundleRef) as info:
        parse_bundle_ref(text)
    err = info.value
    assert isinstance(err, InvalidMessage)
    assert problem in str(err)
    assert err.field == "bundle_ref"
    assert err.hint and "modelops build --push" in err.hint
    assert not re.search(BUNDLE_REF_PATTERN, text)


def test_non_string_ref_is_refused() -> None:
    with pytest.raises(InvalidBundleRef):
        parse_bundle_ref(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad", ["sha256:abc", f"sha256:{HEX.upper()}", f"{DIGEST}\n", f" {DIGEST}", HEX]
)
def test_digest_type_refuses_malformed_digests(bad: str) -> None:
    assert not re.search(DIGEST_PATTERN, bad)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(msgspec.json.encode(bad), type=Digest)


_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,5}[a-z0-9])?", fullmatch=True)
_component = st.from_regex(r"[a-z0-9]+([._-][a-z0-9]+)?", fullmatch=True)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(_label, min_size=1, max_size=3),
    st.none() | st.integers(1, 65535),
    st.lists(_component, min_size=1, max_size=3),
    st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
)
def test_parse_and_str_are_inverse(
    labels: list[str], port: int | None, parts: list[str], hex_: str
) -> None:
    host = ".".join(labels) + (f":{port}" if port else "")
    ref = BundleRef(host=host, repository="/".join(parts), digest=f"sha256:{hex_}")
    assert parse_bundle_ref(str(ref)) == ref
    assert re.search(BUNDLE_REF_PATTERN, str(ref))
