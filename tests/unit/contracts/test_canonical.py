"""Canonical encoding: golden bytes, the rules behind them, and what it refuses."""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelops_contracts import NotCanonical, canonical_bytes, domain_digest
from tests.golden import make_golden

GOLDEN = json.loads((make_golden.GOLDEN_DIR / "canonical.json").read_text(encoding="utf-8"))
VECTORS = {v["name"]: v for v in GOLDEN["vectors"]}

finite_floats = st.floats(allow_nan=False, allow_infinity=False)
scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | finite_floats | st.text()
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)


# ---------------------------------------------------------------- golden vectors


@pytest.mark.parametrize("vector", GOLDEN["vectors"], ids=lambda v: v["name"])
def test_golden_canonical_bytes(vector: dict[str, Any]) -> None:
    raw = canonical_bytes(make_golden.decode_typed(vector["value"]))
    assert raw.hex() == vector["canonical_hex"]
    assert raw.decode("utf-8") == vector["canonical_text"]


@pytest.mark.parametrize("vector", GOLDEN["rejected"], ids=lambda v: v["name"])
def test_golden_rejected_values(vector: dict[str, Any]) -> None:
    with pytest.raises(NotCanonical) as info:
        canonical_bytes(make_golden.decode_typed(vector["value"]))
    assert info.value.field == vector["field"]


@pytest.mark.parametrize("relation", GOLDEN["relations"], ids=lambda r: "/".join(r["names"]))
def test_golden_relations(relation: dict[str, Any]) -> None:
    encoded = [VECTORS[name]["canonical_hex"] for name in relation["names"]]
    if relation["kind"] == "equal":
        assert len(set(encoded)) == 1
    else:
        assert len(set(encoded)) == len(encoded)


def test_golden_files_match_the_generator() -> None:
    """The committed files are what make_golden.py writes now (inputs and outputs agree)."""
    for name, text in make_golden.build_all().items():
        committed = (make_golden.GOLDEN_DIR / name).read_text(encoding="utf-8")
        assert committed == text, (
            f"{name} is stale: run tests/golden/make_golden.py (new domain version?)"
        )


def test_golden_typed_values_survive_json() -> None:
    """The typed form keeps what plain JSON would lose: the sign of zero and int vs float."""
    for value in (-0.0, 0.0, 1, 1.0, True, 2**63 - 1, 1e-300, "é"):
        back = make_golden.decode_typed(json.loads(json.dumps(make_golden.encode_typed(value))))
        assert type(back) is type(value)
        assert repr(back) == repr(value)


# ---------------------------------------------------------------- rules


def test_keys_sorted_by_code_point_not_utf16() -> None:
    # U+FFFF < U+1F600 by code point; UTF-16 (as in RFC 8785) would order them the other way
    assert canonical_bytes({"😀": 1, "\uffff": 2}) == '{"\uffff":2,"😀":1}'.encode()


def test_compact_utf8_without_ascii_escapes() -> None:
    assert canonical_bytes({"a": [1, "é"]}) == '{"a":[1,"é"]}'.encode()


def test_tuples_encode_as_lists_and_structs_as_fields() -> None:
    class Point(msgspec.Struct):
        y: float
        x: float

    assert canonical_bytes((1, 2)) == canonical_bytes([1, 2])
    assert canonical_bytes(Point(y=2.0, x=-0.0)) == b'{"x":0.0,"y":2.0}'


def test_int_range_is_signed_64_bit() -> None:
    assert canonical_bytes(2**63 - 1) == b"9223372036854775807"
    assert canonical_bytes(-(2**63)) == b"-9223372036854775808"
    for bad in (2**63, -(2**63) - 1):
        with pytest.raises(NotCanonical, match="64-bit"):
            canonical_bytes(bad)


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"params": {"beta": math.nan}}, "$.params.beta"),
        ({"a": [0, math.inf]}, "$.a[1]"),
        ([-math.inf], "$[0]"),
    ],
)
def test_non_finite_floats_are_refused_naming_the_field(value: Any, field: str) -> None:
    with pytest.raises(NotCanonical) as info:
        canonical_bytes(value)
    assert info.value.field == field
    assert field in str(info.value)
    assert info.value.hint


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({1: "a"}, "not a string"),
        ({"a": {1, 2}}, "set at $.a"),
        ({"a": b"bytes"}, "bytes at $.a"),
        ({"a": "\ud800"}, "lone surrogate"),
        ({"\udcff": 1}, "lone surrogate"),
    ],
)
def test_values_without_a_canonical_form_are_refused(value: Any, fragment: str) -> None:
    with pytest.raises(NotCanonical, match=fragment.replace("$", r"\$")):
        canonical_bytes(value)


def test_domain_prefix_separates_kinds_of_id() -> None:
    value = {"a": 1}
    assert domain_digest("modelops/param/v1", value) != domain_digest("modelops/task/v1", value)
    assert domain_digest("modelops/param/v1", value).startswith("sha256:")


# ---------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(st.text(max_size=6), json_values, max_size=6), st.randoms(use_true_random=False)
)
def test_bytes_do_not_depend_on_key_order(mapping: dict[str, Any], rnd: Any) -> None:
    items = list(mapping.items())
    rnd.shuffle(items)
    assert canonical_bytes(dict(items)) == canonical_bytes(mapping)


@settings(max_examples=60, deadline=None)
@given(json_values)
def test_canonical_bytes_are_json_that_reads_back_equal(value: Any) -> None:
    raw = canonical_bytes(value)
    assert msgspec.json.decode(raw) == value  # -0.0 == 0.0, so zeros compare equal too
    assert canonical_bytes(msgspec.json.decode(raw)) == raw  # a fixed point


def _digits(text: str) -> str:
    """Significant digits of a float's text, without sign, point, exponent or padding zeros."""
    mantissa = text.lstrip("-").lower().split("e")[0]
    return mantissa.replace(".", "").strip("0") or "0"


@settings(max_examples=60, deadline=None)
@given(finite_floats)
def test_floats_use_shortest_round_trip_form_and_stay_floats(x: float) -> None:
    raw = canonical_bytes(x)
    back = msgspec.json.decode(raw)
    assert isinstance(back, float)
    assert back == x
    assert raw != b"-0.0"
    assert _digits(raw.decode()) == _digits(repr(x))  # same shortest digits as Python's repr
    if x == int(x) and abs(x) < 1e16:
        assert raw.endswith(b".0")  # a whole float never encodes like an int


@settings(max_examples=60, deadline=None)
@given(st.integers(-(2**63), 2**63 - 1))
def test_int_float_and_bool_of_equal_value_encode_differently(n: int) -> None:
    forms = {canonical_bytes(n), canonical_bytes(float(n))}
    if n in (0, 1):
        forms.add(canonical_bytes(bool(n)))
        assert len(forms) == 3
    else:
        assert len(forms) == 2
