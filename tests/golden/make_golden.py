"""Regenerate the golden vectors in tests/golden/ from the inputs listed in this file.

    .venv/bin/python tests/golden/make_golden.py            # rewrite canonical/ids/seeds.json
    .venv/bin/python tests/golden/make_golden.py --check    # exit 1 if any file would change

The unit tests recompute every expected output from the inputs stored in the committed files,
so a change of encoding fails a test instead of drifting silently. Regenerate only for an
intended change, and then bump the domain version (`modelops/param/v2`, ...): ids already
stored by users must keep their meaning.

Typed values. JSON parsers disagree on `-0.0`, on integers beyond 2**53 and on `1` vs `1.0`,
so every input value is written as a one-key object naming its type:

    {"null": null}  {"bool": true}  {"int": "<decimal>"}  {"float": "<Python repr>"}
    {"str": "..."}  {"list": [<typed>, ...]}  {"map": [["key", <typed>], ...]}

`float` payloads are Python `repr` strings (`"-0.0"`, `"1e-300"`, `"nan"`, `"inf"`); `map`
entries are pairs in insertion order, because key order is itself an input. Files are written
with ASCII escapes so that no tool can re-encode the Unicode in them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from modelops_contracts.canonical import canonical_bytes
from modelops_contracts.errors import NotCanonical
from modelops_contracts.hashing import (
    MODEL_DOMAIN,
    PARAM_DOMAIN,
    TASK_DOMAIN,
    model_digest,
    param_id,
    task_id,
)
from modelops_contracts.seeds import SEED_DOMAIN, SEED_MAX, derive_seed, derive_seeds

__all__ = ["GOLDEN_DIR", "build_all", "decode_typed", "encode_typed", "main", "render"]

GOLDEN_DIR = Path(__file__).resolve().parent

TYPED_FORMAT = [
    "Inputs are typed values, one-key objects naming their type:",
    '{"null": null} {"bool": b} {"int": "<decimal>"} {"float": "<Python repr>"} {"str": s}',
    '{"list": [typed, ...]} {"map": [["key", typed], ...]} (pairs keep insertion order).',
    'Floats are Python repr strings ("-0.0", "1e-300", "nan"); ints are decimal strings,',
    "so -0.0, 1 vs 1.0 and 64-bit integers survive any JSON parser.",
    "Regenerate with tests/golden/make_golden.py (only with a new domain version).",
]


# ---------------------------------------------------------------- typed values


def encode_typed(value: Any) -> dict[str, Any]:
    """`value` as a typed JSON object (see module docstring)."""
    if value is None:
        return {"null": None}
    if isinstance(value, bool):
        return {"bool": value}
    if isinstance(value, int):
        return {"int": str(value)}
    if isinstance(value, float):
        return {"float": repr(value)}
    if isinstance(value, str):
        return {"str": value}
    if isinstance(value, list):
        return {"list": [encode_typed(v) for v in value]}
    if isinstance(value, dict):
        return {"map": [[k, encode_typed(v)] for k, v in value.items()]}
    raise TypeError(f"no typed form for {type(value).__name__}: {value!r}")


def decode_typed(node: dict[str, Any]) -> Any:
    """The Python value of a typed JSON object, exactly (sign of zero, int vs float)."""
    if not isinstance(node, dict) or len(node) != 1:
        raise ValueError(f"a typed value is a one-key object, got {node!r}")
    ((tag, payload),) = node.items()
    if tag == "null":
        return None
    if tag == "bool":
        return bool(payload)
    if tag == "int":
        return int(payload)
    if tag == "float":
        return float(payload)
    if tag == "str":
        return str(payload)
    if tag == "list":
        return [decode_typed(v) for v in payload]
    if tag == "map":
        return {k: decode_typed(v) for k, v in payload}
    raise ValueError(f"unknown type tag {tag!r} in golden vector")


# ---------------------------------------------------------------- inputs

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64
UNICODE_KEYS = {"z": 1, "a": 2, "Z": 3, "": 4, "é": 5, "\uffff": 6, "😀": 7, "東": 8}
# U+FFFF sorts before U+1F600 by code point (and UTF-8 bytes); UTF-16 order would swap them.

CANONICAL_INPUTS: dict[str, Any] = {
    "null": None,
    "true": True,
    "false": False,
    "int_zero": 0,
    "int_negative": -1,
    "int_one": 1,
    "float_one": 1.0,
    "float_zero": 0.0,
    "float_neg_zero": -0.0,
    "float_1e16": 1e16,
    "float_1e15": 1e15,
    "float_1e-300": 1e-300,
    "float_0.1+0.2": 0.1 + 0.2,
    "float_min_subnormal": 5e-324,
    "float_max": 1.7976931348623157e308,
    "float_large_whole": 123456789.0,
    "float_negative": -2.5,
    "int_2**53+1": 2**53 + 1,
    "int64_max": 2**63 - 1,
    "int64_min": -(2**63),
    "str_empty": "",
    "str_escapes": 'quote" backslash\\ newline\n tab\t nul\x00 us\x1f del\x7f',
    "str_unicode": "é 東京 😀 \u2028",
    "str_html": "</script>&<>",
    "list_empty": [],
    "map_empty": {},
    "map_unicode_keys": UNICODE_KEYS,
    "map_unicode_keys_reversed": dict(reversed(UNICODE_KEYS.items())),
    "map_nested": {"b": [1, {"d": 2.5, "c": [True, None]}], "a": {"y": -0.0, "x": "s"}},
    "map_nested_reordered": {"a": {"x": "s", "y": 0.0}, "b": [1, {"c": [True, None], "d": 2.5}]},
    "list_mixed_numbers": [1, 1.0, True, "1", 0, 0.0, False],
}
CANONICAL_REJECTED: dict[str, Any] = {
    "nan": float("nan"),
    "inf": float("inf"),
    "neg_inf": float("-inf"),
    "int_2**63": 2**63,
    "int_-2**63-1": -(2**63) - 1,
    "nested_nan": {"a": [1, float("nan")]},
    "nested_inf_in_map": {"cfg": {"dt": float("inf")}},
}
CANONICAL_RELATIONS = [
    ("equal", ["float_zero", "float_neg_zero"]),
    ("equal", ["map_unicode_keys", "map_unicode_keys_reversed"]),
    ("equal", ["map_nested", "map_nested_reordered"]),
    ("distinct", ["int_one", "float_one", "true"]),
    ("distinct", ["int_zero", "float_zero", "false", "null"]),
]

BASE_PARAMS = {"beta": 0.3, "gamma": 0.1, "R0": 2.5}
PARAM_INPUTS: dict[str, dict[str, Any]] = {
    "base": BASE_PARAMS,
    "base_reordered": {"R0": 2.5, "gamma": 0.1, "beta": 0.3},
    "empty": {},
    "zero": {"x": 0.0},
    "neg_zero": {"x": -0.0},
    "int_one": {"x": 1},
    "float_one": {"x": 1.0},
    "bool_true": {"x": True},
    "str_one": {"x": "1"},
    "int_zero": {"x": 0},
    "bool_false": {"x": False},
    "unicode_keys": {"\u03b2": 0.3, "\u03b3": 0.1, "b": 1, "B": 2, "é": 3},  # beta, gamma
    "unicode_keys_reordered": {"é": 3, "B": 2, "b": 1, "\u03b3": 0.1, "\u03b2": 0.3},
    "unicode_values": {"city": "São Paulo", "jp": "東京", "emoji": "😀"},
    "large_ints": {"a": 2**53 + 1, "b": 2**63 - 1, "c": -(2**63)},
    "small_large_floats": {"tiny": 1e-300, "big": 1e16, "sum": 0.1 + 0.2},
    "float_0.3": {"sum": 0.3},
    "float_0.1+0.2": {"sum": 0.1 + 0.2},
    "mixed": {"n": 1000, "p": 0.05, "seasonal": True, "region": "north"},
}
PARAM_RELATIONS = [
    ("equal", ["base", "base_reordered"]),
    ("equal", ["zero", "neg_zero"]),
    ("equal", ["unicode_keys", "unicode_keys_reordered"]),
    ("distinct", ["int_one", "float_one", "bool_true", "str_one"]),
    ("distinct", ["int_zero", "bool_false", "zero"]),
    ("distinct", ["float_0.3", "float_0.1+0.2"]),
]

_BASE_TASK: dict[str, Any] = {
    "bundle_digest": D1,
    "entrypoint": "model:StochasticSIR",
    "param_id": param_id(BASE_PARAMS),
    "seed": 12345,
    "config": {},
    "outputs": None,
}
NESTED_CONFIG = {"solver": {"method": "rk4", "dt": 0.1}, "days": 180, "tags": ["a", "b"]}
TASK_INPUTS: dict[str, dict[str, Any]] = {
    "base": _BASE_TASK,
    "config_none": {**_BASE_TASK, "config": None},
    "other_bundle": {**_BASE_TASK, "bundle_digest": D2},
    "scenario": {**_BASE_TASK, "entrypoint": "model:StochasticSIR/lockdown"},
    "other_entrypoint": {**_BASE_TASK, "entrypoint": "models.sir:StochasticSIR"},
    "other_params": {**_BASE_TASK, "param_id": param_id({**BASE_PARAMS, "beta": 0.31})},
    "other_seed": {**_BASE_TASK, "seed": 12346},
    "seed_zero": {**_BASE_TASK, "seed": 0},
    "seed_max": {**_BASE_TASK, "seed": SEED_MAX},
    "nested_config": {**_BASE_TASK, "config": NESTED_CONFIG},
    "nested_config_reordered": {
        **_BASE_TASK,
        "config": {"tags": ["a", "b"], "days": 180, "solver": {"dt": 0.1, "method": "rk4"}},
    },
    "config_int": {**_BASE_TASK, "config": {"days": 180}},
    "config_float": {**_BASE_TASK, "config": {"days": 180.0}},
    "config_zero": {**_BASE_TASK, "config": {"x": 0.0}},
    "config_neg_zero": {**_BASE_TASK, "config": {"x": -0.0}},
    "outputs": {**_BASE_TASK, "outputs": ["prevalence", "incidence"]},
    "outputs_reordered": {**_BASE_TASK, "outputs": ["incidence", "prevalence"]},
    "outputs_repeated": {**_BASE_TASK, "outputs": ["incidence", "prevalence", "incidence"]},
    "outputs_one": {**_BASE_TASK, "outputs": ["incidence"]},
    "outputs_empty": {**_BASE_TASK, "outputs": []},
}
TASK_RELATIONS = [
    ("equal", ["base", "config_none"]),
    ("equal", ["nested_config", "nested_config_reordered"]),
    ("equal", ["config_zero", "config_neg_zero"]),
    ("equal", ["outputs", "outputs_reordered", "outputs_repeated"]),
    (
        "distinct",
        [
            "base",
            "other_bundle",
            "scenario",
            "other_entrypoint",
            "other_params",
            "other_seed",
            "seed_zero",
            "seed_max",
            "nested_config",
            "config_int",
            "config_float",
            "config_zero",
            "outputs",
            "outputs_one",
            "outputs_empty",
        ],
    ),
]

_CODE = [["model.py", D1], ["sir/__init__.py", D2]]
MODEL_INPUTS: dict[str, dict[str, Any]] = {
    "base": {"entrypoint": "model:StochasticSIR", "code": _CODE, "data": [["data/pop.csv", D3]]},
    "files_reordered": {
        "entrypoint": "model:StochasticSIR",
        "code": list(reversed(_CODE)),
        "data": [["data/pop.csv", D3]],
    },
    "file_digest_changed": {
        "entrypoint": "model:StochasticSIR",
        "code": [["model.py", D1], ["sir/__init__.py", D3]],
        "data": [["data/pop.csv", D3]],
    },
    "file_renamed": {
        "entrypoint": "model:StochasticSIR",
        "code": [["model.py", D1], ["sir/core.py", D2]],
        "data": [["data/pop.csv", D3]],
    },
    "data_as_code": {
        "entrypoint": "model:StochasticSIR",
        "code": [*_CODE, ["data/pop.csv", D3]],
        "data": [],
    },
    "other_entrypoint": {"entrypoint": "model:SEIR", "code": _CODE, "data": [["data/pop.csv", D3]]},
    "no_data": {"entrypoint": "model:StochasticSIR", "code": _CODE, "data": []},
    "unicode_path": {"entrypoint": "model:StochasticSIR", "code": [["modèle.py", D1]], "data": []},
}
MODEL_RELATIONS = [
    ("equal", ["base", "files_reordered"]),
    (
        "distinct",
        [
            "base",
            "file_digest_changed",
            "file_renamed",
            "data_as_code",
            "other_entrypoint",
            "no_data",
        ],
    ),
]

SEED_PARAM_IDS = {
    "base": param_id(BASE_PARAMS),
    "int_one": param_id({"x": 1}),
    "float_one": param_id({"x": 1.0}),
    "zeros": "0" * 64,
}
SEED_BASES = [0, 1, 42, 2**32, 2**63 - 1]
SEED_REPLICATES = [0, 1, 2, 3, 99_999, SEED_MAX]
SEQUENCE_LENGTH = 8


# ---------------------------------------------------------------- documents


def _relations(relations: list[tuple[str, list[str]]]) -> list[dict[str, Any]]:
    return [{"kind": kind, "names": names} for kind, names in relations]


def _canonical_doc() -> dict[str, Any]:
    vectors = []
    for name, value in CANONICAL_INPUTS.items():
        raw = canonical_bytes(value)
        vectors.append(
            {
                "name": name,
                "value": encode_typed(value),
                "canonical_hex": raw.hex(),
                "canonical_text": raw.decode("utf-8"),
            }
        )
    rejected = []
    for name, value in CANONICAL_REJECTED.items():
        try:
            canonical_bytes(value)
        except NotCanonical as exc:
            rejected.append({"name": name, "value": encode_typed(value), "field": exc.field})
        else:
            raise AssertionError(f"golden input {name!r} was expected to be refused")
    return {
        "_format": [
            "Canonical encoding: vectors[].value -> canonical_hex (authoritative bytes, UTF-8;",
            "canonical_text is the same bytes for reading). rejected[].value must raise",
            "NotCanonical naming rejected[].field. relations: equal = same bytes, distinct =",
            "pairwise different bytes.",
            *TYPED_FORMAT,
        ],
        "vectors": vectors,
        "rejected": rejected,
        "relations": _relations(CANONICAL_RELATIONS),
    }


def _task_entry(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "bundle_digest": inputs["bundle_digest"],
        "entrypoint": inputs["entrypoint"],
        "param_id": inputs["param_id"],
        "seed": inputs["seed"],
        "config": encode_typed(inputs["config"]),
        "outputs": inputs["outputs"],
        "task_id": task_id(**inputs),
    }


def _ids_doc() -> dict[str, Any]:
    return {
        "_format": [
            "Content ids. param_id[].params (typed map) -> param_id (64 hex).",
            "task_id[]: bundle_digest, entrypoint, param_id, seed, config (typed map or null),",
            "outputs (list or null = all) -> task_id (64 hex). model_digest[]: entrypoint,",
            "code and data as [path, file digest] pairs -> model_digest (sha256:<hex>). Each id is",
            "sha256(domain + NUL + canonical bytes); domains lists the prefixes. relations:",
            "equal = same id, distinct = pairwise different ids, within one section.",
            *TYPED_FORMAT,
        ],
        "domains": {"param_id": PARAM_DOMAIN, "task_id": TASK_DOMAIN, "model_digest": MODEL_DOMAIN},
        "param_id": [
            {"name": n, "params": encode_typed(p), "param_id": param_id(p)}
            for n, p in PARAM_INPUTS.items()
        ],
        "task_id": [_task_entry(n, t) for n, t in TASK_INPUTS.items()],
        "model_digest": [
            {"name": n, **m, "model_digest": model_digest(**m)} for n, m in MODEL_INPUTS.items()
        ],
        "relations": {
            "param_id": _relations(PARAM_RELATIONS),
            "task_id": _relations(TASK_RELATIONS),
            "model_digest": _relations(MODEL_RELATIONS),
        },
    }


def _seeds_doc() -> dict[str, Any]:
    vectors = [
        {
            "base_seed": str(base),
            "param_id": pid,
            "replicates": SEED_REPLICATES,
            "seeds": [derive_seed(base, pid, r) for r in SEED_REPLICATES],
        }
        for pid in SEED_PARAM_IDS.values()
        for base in SEED_BASES
    ]
    sequences = [
        {"base_seed": str(base), "param_id": pid, "seeds": derive_seeds(base, pid, SEQUENCE_LENGTH)}
        for pid in SEED_PARAM_IDS.values()
        for base in (0, 42)
    ]
    return {
        "_format": [
            "Replicate seeds: derive_seed(int(base_seed), param_id, replicates[i]) == seeds[i];",
            "sequences[]: derive_seeds(int(base_seed), param_id, len(seeds)) == seeds.",
            "base_seed is a decimal string (it may exceed 2**53). Seeds lie in [0, seed_max].",
        ],
        "domain": SEED_DOMAIN.rstrip(b"\x00").decode("ascii"),
        "seed_max": SEED_MAX,
        "vectors": vectors,
        "sequences": sequences,
    }


def render(doc: dict[str, Any]) -> str:
    """The exact text of a golden file: stable key order, ASCII escapes, final newline."""
    return json.dumps(doc, indent=1, ensure_ascii=True) + "\n"


def build_all() -> dict[str, str]:
    """File name -> text of every golden file, as the current code computes it."""
    return {
        "canonical.json": render(_canonical_doc()),
        "ids.json": render(_ids_doc()),
        "seeds.json": render(_seeds_doc()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report files that would change")
    parser.add_argument("--outdir", type=Path, default=GOLDEN_DIR)
    args = parser.parse_args(argv)
    stale = []
    for name, text in build_all().items():
        path = args.outdir / name
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(name)
        if not args.check:
            path.write_text(text, encoding="utf-8")
    verb = "would change" if args.check else "written"
    print(f"{verb}: {', '.join(stale) or 'nothing'}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
