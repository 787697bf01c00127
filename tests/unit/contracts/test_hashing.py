"""Content ids: golden param_id / task_id / model digests and the properties they promise."""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from modelops_contracts import (
    InvalidMessage,
    NotCanonical,
    ParameterSet,
    SimTask,
    model_digest,
    param_id,
    task_id,
)
from modelops_contracts.hashing import MODEL_DOMAIN, PARAM_DOMAIN, TASK_DOMAIN
from tests.golden import make_golden

GOLDEN = json.loads((make_golden.GOLDEN_DIR / "ids.json").read_text(encoding="utf-8"))
SECTIONS = ("param_id", "task_id", "model_digest")

names = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
finite = st.floats(allow_nan=False, allow_infinity=False)
scalar = st.booleans() | st.integers(-(2**63), 2**63 - 1) | finite | st.text(max_size=8)
params_st = st.dictionaries(names, scalar, min_size=1, max_size=6)
digests = st.from_regex(r"sha256:[0-9a-f]{64}", fullmatch=True)
entrypoints = st.from_regex(
    r"[a-z][a-z0-9_]{0,5}(\.[a-z][a-z0-9_]{0,5})?:[A-Z][A-Za-z0-9]{0,6}(/[a-z0-9_-]{1,6})?",
    fullmatch=True,
)
config_st = st.dictionaries(names, scalar | st.lists(scalar, max_size=3), max_size=4)
outputs_st = st.none() | st.lists(names, max_size=4)


def _task_inputs(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "bundle_digest": entry["bundle_digest"],
        "entrypoint": entry["entrypoint"],
        "param_id": entry["param_id"],
        "seed": entry["seed"],
        "config": make_golden.decode_typed(entry["config"]),
        "outputs": entry["outputs"],
    }


# ---------------------------------------------------------------- golden vectors


def test_golden_domains_are_the_code_domains() -> None:
    assert GOLDEN["domains"] == {
        "param_id": PARAM_DOMAIN,
        "task_id": TASK_DOMAIN,
        "model_digest": MODEL_DOMAIN,
    }


@pytest.mark.parametrize("vector", GOLDEN["param_id"], ids=lambda v: v["name"])
def test_golden_param_id(vector: dict[str, Any]) -> None:
    params = make_golden.decode_typed(vector["params"])
    assert param_id(params) == vector["param_id"]


@pytest.mark.parametrize("vector", GOLDEN["task_id"], ids=lambda v: v["name"])
def test_golden_task_id(vector: dict[str, Any]) -> None:
    assert task_id(**_task_inputs(vector)) == vector["task_id"]


@pytest.mark.parametrize("vector", GOLDEN["model_digest"], ids=lambda v: v["name"])
def test_golden_model_digest(vector: dict[str, Any]) -> None:
    got = model_digest(
        entrypoint=vector["entrypoint"],
        code=[tuple(pair) for pair in vector["code"]],
        data=[tuple(pair) for pair in vector["data"]],
    )
    assert got == vector["model_digest"]


@pytest.mark.parametrize(
    ("section", "relation"),
    [(s, r) for s in SECTIONS for r in GOLDEN["relations"][s]],
    ids=lambda x: x if isinstance(x, str) else "/".join(x["names"]),
)
def test_golden_relations(section: str, relation: dict[str, Any]) -> None:
    ids = {v["name"]: v[section] for v in GOLDEN[section]}
    values = [ids[name] for name in relation["names"]]
    expected = 1 if relation["kind"] == "equal" else len(values)
    assert len(set(values)) == expected


def test_golden_ids_are_well_formed() -> None:
    for v in GOLDEN["param_id"] + GOLDEN["task_id"]:
        key = "param_id" if "params" in v else "task_id"
        assert len(v[key]) == 64 and int(v[key], 16) >= 0
    for v in GOLDEN["model_digest"]:
        assert v["model_digest"].startswith("sha256:") and len(v["model_digest"]) == 71


# ---------------------------------------------------------------- param_id


@settings(max_examples=50, deadline=None)
@given(params_st, st.randoms(use_true_random=False))
def test_param_id_is_stable_under_key_order(params: dict[str, Any], rnd: Any) -> None:
    items = list(params.items())
    rnd.shuffle(items)
    assert param_id(dict(items)) == param_id(params)


@settings(max_examples=50, deadline=None)
@given(params_st, scalar)
def test_param_id_changes_with_any_value(params: dict[str, Any], new: Any) -> None:
    name = sorted(params)[0]
    old = params[name]
    same = type(new) is type(old) and (new == old or (isinstance(new, float) and new == 0.0 == old))
    assume(not same)
    assert param_id({**params, name: new}) != param_id(params)


@settings(max_examples=50, deadline=None)
@given(params_st, names)
def test_param_id_changes_with_a_name(params: dict[str, Any], extra: str) -> None:
    assume(extra not in params)
    renamed = dict(params)
    renamed[extra] = renamed.pop(sorted(params)[0])
    assert param_id(renamed) != param_id(params)


@settings(max_examples=50, deadline=None)
@given(st.integers(-(2**53), 2**53))
def test_int_and_float_of_equal_value_give_different_ids(n: int) -> None:
    assert param_id({"x": n}) != param_id({"x": float(n)})
    if n in (0, 1):
        assert len({param_id({"x": n}), param_id({"x": float(n)}), param_id({"x": bool(n)})}) == 3


def test_negative_zero_is_zero() -> None:
    assert param_id({"x": -0.0}) == param_id({"x": 0.0})
    assert ParameterSet(params={"x": -0.0}).param_id == ParameterSet(params={"x": 0.0}).param_id


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_params_are_refused_naming_the_field(bad: float) -> None:
    with pytest.raises(NotCanonical) as info:
        param_id({"ok": 1.0, "beta": bad})
    assert info.value.field == "$.beta"
    with pytest.raises(NotCanonical) as info:
        ParameterSet(params={"ok": 1.0, "beta": bad})
    assert info.value.field == "params.beta"
    assert "beta" in str(info.value)


@settings(max_examples=50, deadline=None)
@given(params_st)
def test_param_id_survives_the_wire(params: dict[str, Any]) -> None:
    """A ParameterSet decoded from its JSON has the same id (int, float and bool kept apart)."""
    ps = ParameterSet(params=params)
    back = msgspec.json.decode(msgspec.json.encode(ps), type=ParameterSet)
    assert back.param_id == ps.param_id


# ---------------------------------------------------------------- task_id


def _base() -> dict[str, Any]:
    return {
        "bundle_digest": "sha256:" + "1" * 64,
        "entrypoint": "model:SIR",
        "param_id": param_id({"beta": 0.3}),
        "seed": 1,
        "config": {"days": 10},
        "outputs": ["incidence"],
    }


_FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "bundle_digest": digests,
    "entrypoint": entrypoints,
    "param_id": params_st.map(param_id),
    "seed": st.integers(0, 2**32 - 1),
    "config": config_st,
    "outputs": outputs_st,
}


def _same_value(a: Any, b: Any) -> bool:
    """Equal as inputs: same types all the way down (1, 1.0, True differ); -0.0 is 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_value(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _same_input(field: str, a: Any, b: Any) -> bool:
    if field == "outputs":
        return (a is None and b is None) or (a is not None and b is not None and set(a) == set(b))
    return _same_value(a, b)


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(sorted(_FIELD_VALUES)), st.data())
def test_task_id_changes_with_every_input_that_changes_a_result(
    field: str, data: st.DataObject
) -> None:
    base = _base()
    new = data.draw(_FIELD_VALUES[field])
    assume(not _same_input(field, base[field], new))
    assert task_id(**{**base, field: new}) != task_id(**base)


def test_task_id_scenario_and_outputs_rules() -> None:
    base = _base()
    assert task_id(**{**base, "entrypoint": "model:SIR/lockdown"}) != task_id(**base)
    assert task_id(**{**base, "outputs": None}) != task_id(**{**base, "outputs": []})
    assert task_id(**{**base, "outputs": ["b", "a", "a"]}) == task_id(
        **{**base, "outputs": ["a", "b"]}
    )
    assert task_id(**{**base, "config": None}) == task_id(**{**base, "config": {}})


@settings(max_examples=50, deadline=None)
@given(config_st, st.randoms(use_true_random=False))
def test_task_id_is_stable_under_config_key_order(config: dict[str, Any], rnd: Any) -> None:
    items = list(config.items())
    rnd.shuffle(items)
    assert task_id(**{**_base(), "config": dict(items)}) == task_id(**{**_base(), "config": config})


def test_task_config_int_and_float_differ_and_nan_is_refused() -> None:
    assert task_id(**{**_base(), "config": {"dt": 1}}) != task_id(
        **{**_base(), "config": {"dt": 1.0}}
    )
    with pytest.raises(NotCanonical) as info:
        task_id(**{**_base(), "config": {"solver": {"dt": math.nan}}})
    assert info.value.field == "$.config.solver.dt"
    with pytest.raises(InvalidMessage) as info2:
        SimTask(
            bundle_ref="h/r@sha256:" + "1" * 64,
            entrypoint="model:SIR",
            params=ParameterSet(params={"beta": 0.3}),
            seed=1,
            config={"solver": {"dt": math.inf}},
        )
    assert info2.value.field == "config.solver.dt"


def test_sim_task_id_uses_only_the_bundle_digest() -> None:
    """The same bundle served by two registries is the same task (and reuses its result)."""
    ps = ParameterSet(params={"beta": 0.3})
    digest = "sha256:" + "1" * 64
    a = SimTask(
        bundle_ref=f"reg-a.example:5000/m/sir@{digest}", entrypoint="model:SIR", params=ps, seed=5
    )
    b = SimTask(
        bundle_ref=f"reg-b/other@{digest}", entrypoint="model:SIR", params=ps, seed=5, replicate=3
    )
    assert a.task_id == b.task_id
    expected = task_id(bundle_digest=digest, entrypoint="model:SIR", param_id=ps.param_id, seed=5)
    assert a.task_id == expected


# ---------------------------------------------------------------- model digest


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(names, digests), min_size=1, max_size=5, unique_by=lambda t: t[0]),
    st.randoms(use_true_random=False),
)
def test_model_digest_ignores_file_order_but_not_file_digests(
    files: list[tuple[str, str]], rnd: Any
) -> None:
    shuffled = list(files)
    rnd.shuffle(shuffled)
    digest = model_digest(entrypoint="m:C", code=files, data=[])
    assert model_digest(entrypoint="m:C", code=shuffled, data=[]) == digest
    path, old = files[0]
    changed = [(path, "sha256:" + ("0" if old[-1] != "0" else "1") * 64), *files[1:]]
    assert model_digest(entrypoint="m:C", code=changed, data=[]) != digest
