"""Replicate seeds: golden values, range, determinism and distinctness."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from modelops_contracts import SEED_MAX, InvalidMessage, derive_seed, derive_seeds, param_id
from modelops_contracts.seeds import SEED_DOMAIN
from tests.golden import make_golden

GOLDEN = json.loads((make_golden.GOLDEN_DIR / "seeds.json").read_text(encoding="utf-8"))
PID = param_id({"beta": 0.3, "gamma": 0.1})

pids = st.from_regex(r"[0-9a-f]{64}", fullmatch=True)
bases = st.integers(0, 2**63 - 1)


def test_golden_header_matches_the_code() -> None:
    assert GOLDEN["domain"].encode("ascii") + b"\x00" == SEED_DOMAIN
    assert GOLDEN["seed_max"] == SEED_MAX == 2**32 - 1


@pytest.mark.parametrize(
    "vector", GOLDEN["vectors"], ids=lambda v: f"{v['base_seed']}-{v['param_id'][:8]}"
)
def test_golden_seeds(vector: dict[str, Any]) -> None:
    base = int(vector["base_seed"])
    got = [derive_seed(base, vector["param_id"], r) for r in vector["replicates"]]
    assert got == vector["seeds"]


@pytest.mark.parametrize(
    "seq", GOLDEN["sequences"], ids=lambda v: f"{v['base_seed']}-{v['param_id'][:8]}"
)
def test_golden_sequences(seq: dict[str, Any]) -> None:
    assert derive_seeds(int(seq["base_seed"]), seq["param_id"], len(seq["seeds"])) == seq["seeds"]


def test_hundred_thousand_replicates_are_distinct_and_in_range() -> None:
    seeds = derive_seeds(20240601, PID, 100_000)
    assert len(seeds) == 100_000
    assert len(set(seeds)) == 100_000
    assert min(seeds) >= 0 and max(seeds) <= SEED_MAX < 2**32


def test_derive_seeds_agrees_with_derive_seed() -> None:
    seeds = derive_seeds(3, PID, 50)
    assert seeds == [derive_seed(3, PID, r) for r in range(50)]
    assert derive_seeds(3, PID, 0) == []


@settings(max_examples=60, deadline=None)
@given(bases, pids, st.integers(0, SEED_MAX))
def test_seed_is_deterministic_and_in_range(base: int, pid: str, replicate: int) -> None:
    seed = derive_seed(base, pid, replicate)
    assert 0 <= seed <= SEED_MAX
    assert derive_seed(base, pid, replicate) == seed


@settings(max_examples=60, deadline=None)
@given(bases, pids, st.integers(0, SEED_MAX), st.integers(0, SEED_MAX))
def test_distinct_replicates_get_distinct_seeds(base: int, pid: str, r1: int, r2: int) -> None:
    assume(r1 != r2)
    assert derive_seed(base, pid, r1) != derive_seed(base, pid, r2)


@settings(max_examples=40, deadline=None)
@given(bases, pids, pids)
def test_seeds_differ_across_parameter_sets(base: int, a: str, b: str) -> None:
    assume(a != b)
    assert derive_seeds(base, a, 8) != derive_seeds(base, b, 8)


@settings(max_examples=40, deadline=None)
@given(bases, bases, pids)
def test_seeds_differ_across_base_seeds(b1: int, b2: int, pid: str) -> None:
    assume(b1 != b2)
    assert derive_seeds(b1, pid, 8) != derive_seeds(b2, pid, 8)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"base_seed": -1}, "base_seed"),
        ({"base_seed": 2**63}, "base_seed"),
        ({"base_seed": True}, "base_seed"),
        ({"base_seed": 1.0}, "base_seed"),
        ({"replicate": -1}, "replicate"),
        ({"replicate": 2**32}, "replicate"),
        ({"replicate": False}, "replicate"),
    ],
)
def test_derive_seed_refuses_bad_arguments(kwargs: dict[str, Any], field: str) -> None:
    args = {"base_seed": 0, "param_id": PID, "replicate": 0, **kwargs}
    with pytest.raises(InvalidMessage) as info:
        derive_seed(**args)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"base_seed": 2**63}, "base_seed"),
        ({"base_seed": -5}, "base_seed"),
        ({"n_replicates": -1}, "n_replicates"),
        ({"n_replicates": 2**32 + 1}, "n_replicates"),
        ({"n_replicates": 2.0}, "n_replicates"),
    ],
)
def test_derive_seeds_refuses_bad_arguments(kwargs: dict[str, Any], field: str) -> None:
    args = {"base_seed": 0, "param_id": PID, "n_replicates": 1, **kwargs}
    with pytest.raises(InvalidMessage) as info:
        derive_seeds(**args)
    assert info.value.field == field
