"""Entrypoint grammar: `package.module:Class[/scenario]`, one parser, round trip through str()."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelops_contracts import Entrypoint, InvalidEntrypoint, InvalidMessage, parse_entrypoint
from modelops_contracts.entrypoint import ENTRYPOINT_PATTERN


@pytest.mark.parametrize(
    ("text", "module", "cls", "scenario"),
    [
        ("model:StochasticSIR", "model", "StochasticSIR", None),
        ("models.sir.core:SIR", "models.sir.core", "SIR", None),
        ("_private:_Cls9", "_private", "_Cls9", None),
        ("model:SIR/lockdown", "model", "SIR", "lockdown"),
        ("pkg.mod:SIR/school-closure_v2.1", "pkg.mod", "SIR", "school-closure_v2.1"),
        ("m:C/0", "m", "C", "0"),
    ],
)
def test_valid_entrypoints_parse_and_round_trip(
    text: str, module: str, cls: str, scenario: str | None
) -> None:
    ep = parse_entrypoint(text)
    assert (ep.module, ep.cls, ep.scenario) == (module, cls, scenario)
    assert str(ep) == text
    assert ep.target == f"{module}:{cls}"
    assert re.search(ENTRYPOINT_PATTERN, text)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("model", "has no ':Class' part"),
        ("models.sir", "has no ':Class' part"),
        ("model:", "names no class after ':'"),
        ("model:/lockdown", "names no class after ':'"),
        ("model:SIR:Other", "has more than one ':'"),
        ("a:b:c/x", "has more than one ':'"),
        ("model:SIR/", "is not of the form"),
        ("model:SIR/bad scenario", "is not of the form"),
        ("model:SIR/-lead", "is not of the form"),
        ("model:SIR/a/b", "is not of the form"),
        ("model:SIR.Inner", "is not of the form"),
        (":SIR", "is not of the form"),
        (".model:SIR", "is not of the form"),
        ("model.:SIR", "is not of the form"),
        ("models..sir:SIR", "is not of the form"),
        ("models/sir:SIR", "is not of the form"),
        ("1model:SIR", "is not of the form"),
        ("model:1SIR", "is not of the form"),
        ("model-x:SIR", "is not of the form"),
        ("mödel:SIR", "is not of the form"),
        (" model:SIR", "is not of the form"),
        ("model:SIR\n", "is not of the form"),
        ("model:SIR/lockdown\n", "is not of the form"),
        ("", "has no ':Class' part"),
    ],
)
def test_invalid_entrypoints_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(InvalidEntrypoint) as info:
        parse_entrypoint(text)
    err = info.value
    assert isinstance(err, InvalidMessage)
    assert problem in str(err)
    assert repr(text) in str(err)
    assert err.field == "entrypoint"
    assert err.hint and "package.module:Class" in err.hint
    # the exported pattern (what other systems validate with) agrees with the parser
    assert not re.search(ENTRYPOINT_PATTERN, text)


def test_non_string_entrypoint_is_refused() -> None:
    with pytest.raises(InvalidEntrypoint, match="must be a string"):
        parse_entrypoint(42)  # type: ignore[arg-type]


def test_with_scenario_replaces_or_drops_the_scenario() -> None:
    ep = parse_entrypoint("model:SIR/lockdown")
    assert str(ep.with_scenario("baseline")) == "model:SIR/baseline"
    assert str(ep.with_scenario(None)) == "model:SIR"
    assert ep.with_scenario(None) == Entrypoint(module="model", cls="SIR")
    with pytest.raises(InvalidEntrypoint):
        ep.with_scenario("no spaces")


_ident = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True)
_scenario = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,6}", fullmatch=True)


@settings(max_examples=60, deadline=None)
@given(st.lists(_ident, min_size=1, max_size=3), _ident, st.none() | _scenario)
def test_parse_and_str_are_inverse(parts: list[str], cls: str, scenario: str | None) -> None:
    ep = Entrypoint(module=".".join(parts), cls=cls, scenario=scenario)
    assert parse_entrypoint(str(ep)) == ep
    assert re.search(ENTRYPOINT_PATTERN, str(ep))


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="ab.:/_- 1\n", max_size=12))
def test_pattern_and_parser_agree_on_any_text(text: str) -> None:
    try:
        parse_entrypoint(text)
        parsed = True
    except InvalidEntrypoint:
        parsed = False
    assert parsed == bool(re.search(ENTRYPOINT_PATTERN, text))
