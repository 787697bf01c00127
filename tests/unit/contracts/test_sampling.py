"""Sampling strategies: statistical properties, determinism, tables, space files, studies."""

from __future__ import annotations

import csv
import hashlib
import math
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.stats import qmc

from modelops_contracts.domain import ParameterSet, ParameterSpace, ParameterSpec
from modelops_contracts.sampling import (
    DuplicatePointsWarning,
    SamplingError,
    SobolBalanceWarning,
    build_study,
    from_table,
    grid,
    latin_hypercube,
    load_space,
    map_unit_samples,
    random,
    sobol,
)

SAMPLERS = {"random": random, "sobol": sobol, "lhs": latin_hypercube}
fast = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def space(*specs: ParameterSpec) -> ParameterSpace:
    return ParameterSpace(specs=list(specs))


def f(name: str, lower: float, upper: float, log: bool = False) -> ParameterSpec:
    return ParameterSpec(name=name, lower=lower, upper=upper, log=log)


def i(name: str, lower: int, upper: int, log: bool = False) -> ParameterSpec:
    return ParameterSpec(name=name, lower=lower, upper=upper, kind="int", log=log)


MIXED = space(f("beta", 0.1, 0.5), i("n", 1, 10), f("d", 1e-3, 1.0, log=True))
FLOATS = space(f("a", -2.0, 3.0), f("b", 1e-3, 1e3, log=True), f("c", 0.0, 1.0))


def to_unit(sp: ParameterSpace, sets: list[ParameterSet]) -> np.ndarray:
    """Invert the float mapping: the unit-cube point each (float) set came from."""
    cols = []
    for s in sp.specs:
        x = np.array([ps.params[s.name] for ps in sets], dtype=float)
        if s.log:
            x, lo, hi = np.log(x), math.log(s.lower), math.log(s.upper)
        else:
            lo, hi = s.lower, s.upper
        cols.append((x - lo) / (hi - lo))
    return np.column_stack(cols)


def ids(sets: list[ParameterSet]) -> list[str]:
    return [ps.param_id for ps in sets]


# ---------------------------------------------------------------- mapping


def test_int_mapping_gives_each_integer_an_equal_share_of_the_unit_interval():
    sp = space(i("k", -2, 4))  # 7 integers
    per = 50
    u = ((np.arange(7 * per) + 0.5) / (7 * per)).reshape(-1, 1)
    counts = Counter(row["k"] for row in map_unit_samples(sp, u))
    assert counts == {k: per for k in range(-2, 5)}


def test_mapping_hits_the_bounds_and_returns_plain_python_numbers():
    sp = space(
        f("x", 0.1, 0.5), i("k", 1, 10), f("d", 1e-3, 1.0, log=True), i("m", 1, 1000, log=True)
    )
    edge = np.nextafter(1.0, 0.0)
    lo, hi = map_unit_samples(sp, [[0.0] * 4, [edge] * 4])
    assert lo == {"x": 0.1, "k": 1, "d": 0.001, "m": 1}
    assert hi["k"] == 10 and hi["m"] == 1000
    assert hi["x"] <= 0.5 and hi["d"] <= 1.0
    assert hi["x"] == pytest.approx(0.5) and hi["d"] == pytest.approx(1.0)
    for row in (lo, hi):
        assert type(row["x"]) is float and type(row["d"]) is float
        assert type(row["k"]) is int and type(row["m"]) is int


def test_log_mapping_is_linear_in_log_space():
    (row,) = map_unit_samples(space(f("d", 1e-4, 1.0, log=True)), [[0.25]])
    assert row["d"] == pytest.approx(1e-3)


def test_mapping_refuses_the_wrong_shape():
    with pytest.raises(SamplingError, match=r"shape \(3, 2\).*\(n, 3\)"):
        map_unit_samples(MIXED, np.zeros((3, 2)))
    with pytest.raises(SamplingError, match=r"must lie in \[0, 1\]"):
        map_unit_samples(MIXED, [[0.5, 0.5, 1.5]])
    with pytest.raises(SamplingError, match=r"must lie in \[0, 1\]"):
        map_unit_samples(MIXED, [[0.5, float("nan"), 0.5]])


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_int_parameter_is_uniform_over_its_integers(name):
    sp = space(f("x", 0.0, 1.0), i("k", 1, 6))
    sets = SAMPLERS[name](sp, 4096, seed=11)
    counts = Counter(ps.params["k"] for ps in sets)
    assert sorted(counts) == [1, 2, 3, 4, 5, 6]
    assert stats.chisquare([counts[k] for k in range(1, 7)]).pvalue > 1e-3


def test_log_parameter_is_log_uniform():
    sets = random(space(f("d", 1e-3, 1.0, log=True)), 3000, seed=5)
    logs = np.log10([ps.params["d"] for ps in sets])
    assert stats.kstest(logs, stats.uniform(loc=-3, scale=3).cdf).pvalue > 1e-3
    decades = Counter(np.floor(logs).astype(int).tolist())
    assert all(abs(decades[k] - 1000) < 120 for k in (-3, -2, -1))


def test_log_int_parameter_weights_integers_like_log_of_i_plus_one_over_i():
    sets = random(space(f("x", 0.0, 1.0), i("m", 1, 9, log=True)), 8000, seed=2)
    counts = Counter(ps.params["m"] for ps in sets)
    expected = [8000 * math.log((k + 1) / k) / math.log(10) for k in range(1, 10)]
    assert stats.chisquare([counts[k] for k in range(1, 10)], expected).pvalue > 1e-3


# ---------------------------------------------------------------- bounds, types, determinism

spec_strategy = st.one_of(
    st.tuples(st.floats(-1e3, 1e3), st.floats(1e-3, 1e3)).map(
        lambda t: ("float", t[0], t[0] + t[1], False)
    ),
    st.tuples(st.floats(1e-6, 1e3), st.floats(1.001, 1e4)).map(
        lambda t: ("float", t[0], t[0] * t[1], True)
    ),
    st.tuples(st.integers(-50, 50), st.integers(0, 100)).map(
        lambda t: ("int", t[0], t[0] + t[1], False)
    ),
    st.tuples(st.integers(1, 50), st.integers(0, 1000)).map(
        lambda t: ("int", t[0], t[0] + t[1], True)
    ),
)
space_strategy = st.lists(spec_strategy, min_size=1, max_size=4).map(
    lambda specs: space(
        *(
            ParameterSpec(name=f"p{j}", lower=lo, upper=hi, kind=kind, log=log)
            for j, (kind, lo, hi, log) in enumerate(specs)
        )
    )
)


@fast
@given(
    sp=space_strategy,
    n=st.integers(1, 40),
    seed=st.integers(0, 2**63),
    name=st.sampled_from(sorted(SAMPLERS)),
)
@pytest.mark.filterwarnings("ignore::modelops_contracts.sampling.DuplicatePointsWarning")
@pytest.mark.filterwarnings("ignore::modelops_contracts.sampling.SobolBalanceWarning")
def test_samples_are_in_bounds_typed_distinct_and_reproducible(sp, n, seed, name):
    sets = SAMPLERS[name](sp, n, seed)
    assert 1 <= len(sets) <= n
    assert len(set(ids(sets))) == len(sets)
    sp_check = sp.check
    for ps in sets:
        sp_check(ps.params)  # in range and int params are ints
        for s in sp.specs:
            assert type(ps.params[s.name]) is (int if s.kind == "int" else float)
    assert ids(SAMPLERS[name](sp, n, seed)) == ids(sets)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_same_seed_same_sets_other_seed_other_sets(name):
    first = SAMPLERS[name](MIXED, 32, seed=7)
    assert ids(SAMPLERS[name](MIXED, 32, seed=7)) == ids(first)
    assert set(ids(SAMPLERS[name](MIXED, 32, seed=8))).isdisjoint(ids(first))


def test_unscrambled_sobol_ignores_the_seed():
    assert ids(sobol(FLOATS, 8, seed=1, scramble=False)) == ids(
        sobol(FLOATS, 8, seed=2, scramble=False)
    )


def design_digest(sets: list[ParameterSet]) -> str:
    return hashlib.sha256("\n".join(ids(sets)).encode()).hexdigest()[:16]


GOLDEN = {
    "random": "32b1448a269e2921",
    "sobol": "2b10e349c5b0db64",
    "lhs": "bad7f580a2a6cdcf",
    "grid": "45aa399360f0016e",
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_designs_match_golden_digests(name):
    """Pins the streams: a numpy/scipy upgrade that changes a design fails here, not silently."""
    sets = grid(MIXED, 3) if name == "grid" else SAMPLERS[name](MIXED, 16, seed=2024)
    assert design_digest(sets) == GOLDEN[name]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, None])
def test_bad_sample_sizes_are_refused(bad):
    with pytest.raises(SamplingError, match="n must be a positive int"):
        random(MIXED, bad, seed=1)


@pytest.mark.parametrize("bad", [-1, 1.0, True, "7"])
@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_bad_seeds_are_refused(name, bad):
    with pytest.raises(SamplingError, match="seed must be a non-negative int"):
        SAMPLERS[name](MIXED, 4, bad)


# ---------------------------------------------------------------- Latin hypercube and Sobol


@fast
@given(n=st.integers(1, 64), seed=st.integers(0, 2**32))
def test_lhs_hits_every_stratum_of_every_dimension_exactly_once(n, seed):
    u = to_unit(FLOATS, latin_hypercube(FLOATS, n, seed))
    for dim in u.T:
        assert sorted(np.floor(dim * n).astype(int).tolist()) == list(range(n))


@fast
@given(k=st.integers(1, 8), seed=st.integers(0, 2**32), scramble=st.booleans())
def test_sobol_power_of_two_is_balanced(k, seed, scramble):
    n = 2**k
    unit = space(f("a", 0.0, 1.0), f("b", 0.0, 1.0), f("c", 0.0, 1.0))  # exact: x == u
    u = to_unit(unit, sobol(unit, n, seed, scramble))
    for dim in u.T:
        assert int((dim < 0.5).sum()) == n // 2  # each half gets n/2 points
        # stronger: the 1-D projection of a Sobol' net puts one point in each 1/n interval
        assert sorted(np.floor(dim * n).astype(int).tolist()) == list(range(n))


def test_sobol_has_lower_discrepancy_than_random():
    n = 256
    qmc_d = qmc.discrepancy(to_unit(FLOATS, sobol(FLOATS, n, seed=3)))
    rnd_d = qmc.discrepancy(to_unit(FLOATS, random(FLOATS, n, seed=3)))
    assert qmc_d < rnd_d / 5


def test_sobol_warns_once_and_only_ours_when_n_is_not_a_power_of_two():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sets = sobol(FLOATS, 6, seed=1)
    assert [type(w.message) for w in caught] == [SobolBalanceWarning]
    assert "n=6 is not a power of two" in str(caught[0].message)
    assert "n=4 or n=8" in str(caught[0].message)
    assert caught[0].filename == __file__  # points at the caller
    # the points are scipy's own first 6
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = qmc.Sobol(3, rng=1).random(6)
    assert ids(sets) == ids([ParameterSet(params=p) for p in map_unit_samples(FLOATS, expected)])


def test_sobol_power_of_two_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(sobol(FLOATS, 8, seed=1)) == 8
        assert len(sobol(FLOATS, 1, seed=1)) == 1


# ---------------------------------------------------------------- duplicates


def test_repeated_int_points_are_dropped_in_draw_order_with_a_warning():
    sp = space(i("a", 1, 3), i("b", 0, 1))  # 6 distinct points
    with pytest.warns(
        DuplicatePointsWarning, match=r"random: 94 of 100 .* 6 distinct sets remain"
    ) as caught:
        sets = random(sp, 100, seed=9)
    assert caught[0].filename == __file__  # points at the caller
    rows = map_unit_samples(sp, np.random.default_rng(9).random((100, 2)))
    first_seen = list(dict.fromkeys(tuple(r.values()) for r in rows))
    assert [tuple(ps.params.values()) for ps in sets] == first_seen
    assert len(first_seen) == 6


def test_duplicate_warning_can_be_made_an_error():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DuplicatePointsWarning)
        with pytest.raises(DuplicatePointsWarning):
            latin_hypercube(space(i("a", 1, 2)), 5, seed=1)


# ---------------------------------------------------------------- grid


@fast
@given(sp=space_strategy, k=st.integers(1, 6))
def test_grid_is_a_full_factorial_without_repeats(sp, k):
    sets = grid(sp, k)
    per_param = [len({ps.params[name] for ps in sets}) for name in sp.names]
    assert len(sets) == math.prod(per_param)
    assert len(set(ids(sets))) == len(sets)
    for s, levels in zip(sp.specs, per_param, strict=True):
        if s.kind == "int":
            assert levels == min(k, int(s.upper - s.lower) + 1)
    for ps in sets:
        sp.check(ps.params)


def test_grid_levels_are_evenly_spaced_exact_at_the_ends_and_readable():
    sets = grid(space(f("beta", 0.1, 0.5), f("d", 1e-3, 1.0, log=True)), {"beta": 5, "d": 4})
    assert sorted({ps.params["beta"] for ps in sets}) == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert sorted({ps.params["d"] for ps in sets}) == [0.001, 0.01, 0.1, 1.0]
    assert len(sets) == 20


def test_grid_varies_the_last_parameter_fastest():
    sets = grid(space(i("a", 0, 1), i("b", 0, 2)), 3)
    assert [(ps.params["a"], ps.params["b"]) for ps in sets] == [
        (0, 0),
        (0, 1),
        (0, 2),
        (1, 0),
        (1, 1),
        (1, 2),
    ]


def test_grid_int_levels_use_each_integer_once_when_asked_for_more():
    sets = grid(space(i("k", 1, 3), f("x", 0.0, 1.0)), {"k": 10, "x": 2})
    assert sorted(ps.params["k"] for ps in sets) == [1, 1, 2, 2, 3, 3]


@pytest.mark.parametrize("k", [2, 5, 30, 99, 100])
def test_grid_log_int_levels_are_distinct_and_include_the_ends(k):
    levels = [ps.params["m"] for ps in grid(space(i("m", 1, 100, log=True)), k)]
    assert len(set(levels)) == len(levels) == k
    assert levels == sorted(levels) and levels[0] == 1 and levels[-1] == 100


def test_grid_single_level_is_the_midpoint():
    (ps,) = grid(space(f("x", 0.1, 0.5), f("d", 1e-4, 1.0, log=True), i("k", 1, 9)), 1)
    assert ps.params == {"x": 0.3, "d": 0.01, "k": 5}


def test_grid_refuses_bad_level_counts():
    with pytest.raises(SamplingError, match=r"unknown: \['zeta'\], missing: \['n', 'd'\]"):
        grid(MIXED, {"beta": 2, "zeta": 3})
    with pytest.raises(SamplingError, match="n_levels for 'n' must be a positive int, got 0"):
        grid(MIXED, {"beta": 2, "n": 0, "d": 2})
    with pytest.raises(SamplingError, match=r"1000000 points \(100 x 100 x 100\).*max_points"):
        grid(space(f("a", 0, 1), f("b", 0, 1), f("c", 0, 1)), 100, max_points=999_999)


# ---------------------------------------------------------------- explicit tables


def write_csv(path: Path, rows: list[list[object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return path


def test_csv_round_trip(tmp_path):
    sets = latin_hypercube(MIXED, 20, seed=4)
    path = write_csv(
        tmp_path / "sets.csv",
        [MIXED.names] + [[repr(ps.params[n]) for n in MIXED.names] for ps in sets],
    )
    assert ids(from_table(path, MIXED)) == ids(sets)
    assert ids(from_table(str(path), MIXED)) == ids(sets)


def test_parquet_round_trip(tmp_path):
    sets = sobol(MIXED, 16, seed=4)
    table = pa.table({n: [ps.params[n] for ps in sets] for n in MIXED.names})
    pq.write_table(table, tmp_path / "sets.parquet")
    back = from_table(tmp_path / "sets.parquet", MIXED)
    assert ids(back) == ids(sets)
    assert all(type(ps.params["n"]) is int for ps in back)


def test_table_values_are_typed_per_the_space(tmp_path):
    path = write_csv(
        tmp_path / "t.csv", [[" n", "beta ", "d"], ["3.0", "0.2", "1e-2"], ["4", "1", "1"]]
    )
    with pytest.raises(
        SamplingError, match=r"row 2 \(line 3 of .*t\.csv\), column 'beta': .*outside"
    ):
        from_table(path, MIXED)
    path = write_csv(
        tmp_path / "t.csv", [["n", "beta", "d"], ["3.0", "0.2", "1e-2"], ["4", "0.5", "1"]]
    )
    sets = from_table(path, MIXED)
    assert [ps.params for ps in sets] == [
        {"beta": 0.2, "n": 3, "d": 0.01},
        {"beta": 0.5, "n": 4, "d": 1.0},
    ]
    assert type(sets[1].params["beta"]) is float


def test_rows_given_as_dicts_are_typed_and_validated():
    rows = [
        {"beta": 0.2, "n": np.int64(3), "d": 1},
        {"beta": np.float64(0.3), "n": 4.0, "d": "0.5"},
    ]
    sets = from_table(rows, MIXED)
    assert [ps.params for ps in sets] == [
        {"beta": 0.2, "n": 3, "d": 1.0},
        {"beta": 0.3, "n": 4, "d": 0.5},
    ]
    assert [type(v) for v in sets[0].params.values()] == [float, int, float]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            {"beta": 0.2, "n": 3.5, "d": 0.1},
            r"row 1, column 'n': int parameter needs a whole number, got 3.5",
        ),
        ({"beta": "abc", "n": 3, "d": 0.1}, r"row 1, column 'beta': expected a number, got 'abc'"),
        ({"beta": "", "n": 3, "d": 0.1}, r"row 1, column 'beta' is empty"),
        ({"beta": True, "n": 3, "d": 0.1}, r"row 1, column 'beta': expected a number, got True"),
        ({"beta": None, "n": 3, "d": 0.1}, r"row 1, column 'beta': expected a number, got None"),
        ({"beta": float("nan"), "n": 3, "d": 0.1}, r"row 1, column 'beta': nan is not a finite"),
        (
            {"beta": 0.2, "n": 11, "d": 0.1},
            r"row 1, column 'n': parameter 'n' = 11 is outside \[1, 10\]",
        ),
        ({"beta": 0.2, "n": 3}, r"row 1: unknown column\(s\) none, missing column\(s\) \['d'\]"),
        ({"beta": 0.2, "n": 3, "d": 0.1, "x": 1}, r"row 1: unknown column\(s\) \['x'\]"),
    ],
)
def test_bad_table_values_name_the_row_and_column(row, message):
    with pytest.raises(SamplingError, match=message):
        from_table([row], MIXED)


def test_repeated_table_rows_are_refused(tmp_path):
    path = write_csv(
        tmp_path / "t.csv",
        [["beta", "n", "d"], ["0.2", "3", "0.1"], ["0.3", "3", "0.1"], ["0.2", "3.0", "0.1"]],
    )
    with pytest.raises(
        SamplingError, match=r"row 3 \(line 4 .*\) repeats row 1 \(line 2 .*n_replicates"
    ):
        from_table(path, MIXED)


def test_table_without_a_space_infers_int_float_and_str(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("\ufeffa,b,c\n1,2.5,x\n\n-3,1e-3,y\n", encoding="utf-8")  # BOM, blank line
    sets = from_table(path)
    assert [ps.params for ps in sets] == [
        {"a": 1, "b": 2.5, "c": "x"},
        {"a": -3, "b": 0.001, "c": "y"},
    ]
    with pytest.raises(SamplingError, match=r"row 2: unknown column\(s\) \['z'\].*first row has a"):
        from_table([{"a": 1}, {"z": 1}])


def test_malformed_table_files_are_refused_clearly(tmp_path):
    with pytest.raises(SamplingError, match="has no rows"):
        from_table(write_csv(tmp_path / "h.csv", [["a", "b"]]))
    with pytest.raises(SamplingError, match="is empty"):
        from_table(write_csv(tmp_path / "e.csv", []))
    with pytest.raises(SamplingError, match=r"row 1 \(line 2 .*\) has 3 fields, the header has 2"):
        from_table(write_csv(tmp_path / "w.csv", [["a", "b"], ["1", "2", "3"]]))
    with pytest.raises(SamplingError, match="repeats column"):
        from_table(write_csv(tmp_path / "d.csv", [["a", "a"], ["1", "2"]]))
    with pytest.raises(SamplingError, match=r"cannot tell the format.*csv or \*\.parquet"):
        from_table(tmp_path / "t.xlsx")
    with pytest.raises(SamplingError, match=r"cannot read CSV table .*missing\.csv"):
        from_table(tmp_path / "missing.csv")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(SamplingError, match="cannot read Parquet table"):
        from_table(tmp_path / "bad.parquet")
    with pytest.raises(SamplingError, match="row 2 is a list"):
        from_table([{"a": 1}, [1]])


def test_parquet_nulls_are_refused(tmp_path):
    pq.write_table(
        pa.table({"beta": [0.2, None], "n": [1, 2], "d": [0.1, 0.1]}), tmp_path / "n.parquet"
    )
    with pytest.raises(
        SamplingError, match=r"row 2 of .*n\.parquet, column 'beta': expected a number, got None"
    ):
        from_table(tmp_path / "n.parquet", MIXED)


def test_parquet_without_pyarrow_says_what_to_install(tmp_path, monkeypatch):
    pq.write_table(pa.table({"a": [1]}), tmp_path / "t.parquet")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow...` fail
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(SamplingError, match=r"needs pyarrow.*pip install pyarrow") as info:
        from_table(tmp_path / "t.parquet")
    assert isinstance(info.value.__cause__, ImportError)


# ---------------------------------------------------------------- parameter-space files

SPACE_FILES = {
    "space.yaml": """
parameters:
  beta: {lower: 0.1, upper: 0.5}
  n: {lower: 1, upper: 10, kind: int}
  d: {lower: 1e-3, upper: 1, log: true}
""",
    "space.json": """{"parameters": {"beta": {"lower": 0.1, "upper": 0.5},
 "n": {"lower": 1, "upper": 10, "kind": "int"}, "d": {"lower": 1e-3, "upper": 1, "log": true}}}""",
    "space.toml": """
[parameters]
beta = {lower = 0.1, upper = 0.5}
n = {lower = 1, upper = 10, kind = "int"}
d = {lower = 1e-3, upper = 1, log = true}
""",
}


@pytest.mark.parametrize("name", sorted(SPACE_FILES))
def test_space_files_load_the_same_space(tmp_path, name):
    path = tmp_path / name
    path.write_text(SPACE_FILES[name], encoding="utf-8")
    assert load_space(path) == MIXED
    assert all(type(s.lower) is float and type(s.upper) is float for s in load_space(path).specs)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("other: 1\n", r"has no 'parameters' mapping"),
        ("parameters: {}\n", r"has no 'parameters' mapping"),
        ("parameters: [1, 2]\n", r"has no 'parameters' mapping"),
        ("parameters: {b: 3}\n", r"parameter 'b' must be a mapping with lower and upper"),
        ("parameters: {b: {lower: 1, uper: 2}}\n", r"parameter 'b' has unknown key\(s\) uper"),
        ("parameters: {b: {lower: 1}}\n", r"parameter 'b' has no 'upper' bound"),
        (
            "parameters: {b: {lower: x, upper: 2}}\n",
            r"parameter 'b': lower must be a number, got 'x'",
        ),
        ("parameters: {b: {lower: true, upper: 2}}\n", r"parameter 'b': lower must be a number"),
        ("parameters: {b: {lower: 1, upper: 2, kind: str}}\n", r"kind must be 'float' or 'int'"),
        ("parameters: {b: {lower: 1, upper: 2, log: yes please}}\n", r"log must be true or false"),
        (
            "parameters: {b: {lower: 3, upper: 2}}\n",
            r"parameter 'b': lower 3.0 must be below upper 2.0",
        ),
        ("parameters: {b: {lower: 0, upper: 2, log: true}}\n", r"log-scaled range needs lower > 0"),
        (
            "parameters: {b: {lower: 0.5, upper: 2, kind: int}}\n",
            r"int bounds must be whole numbers",
        ),
        ("parameters: {b-c: {lower: 0, upper: 2}}\n", r"'b-c' is not a Python identifier"),
        ("parameters: {b: [\n", r"is not valid YAML"),
    ],
)
def test_bad_space_files_are_refused_clearly(tmp_path, text, message):
    path = tmp_path / "space.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SamplingError, match=message) as info:
        load_space(path)
    assert str(path) in str(info.value)


def test_space_file_format_and_read_errors(tmp_path):
    with pytest.raises(SamplingError, match=r"cannot tell the format .*\.ini"):
        load_space(tmp_path / "space.ini")
    with pytest.raises(SamplingError, match="cannot read parameter-space file"):
        load_space(tmp_path / "absent.yaml")
    (tmp_path / "s.json").write_text("{", encoding="utf-8")
    with pytest.raises(SamplingError, match="not valid JSON"):
        load_space(tmp_path / "s.json")
    (tmp_path / "s.toml").write_text("parameters = [", encoding="utf-8")
    with pytest.raises(SamplingError, match="not valid TOML"):
        load_space(tmp_path / "s.toml")


# ---------------------------------------------------------------- build_study

MODEL = "sir.model:StochasticSIR"
BUNDLE = "127.0.0.1:5000/models/sir@sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("random", {"n": 16, "seed": 3}),
        ("sobol", {"n": 16, "seed": 3}),
        ("lhs", {"n": 16, "seed": 3}),
        ("grid", {"n_levels": {"beta": 2, "n": 4, "d": 2}}),
    ],
)
def test_build_study_is_deterministic_and_records_how_it_sampled(method, kwargs):
    study = build_study(
        MODEL, MIXED, method, n_replicates=3, name="s1", metadata={"owner": "ana"}, **kwargs
    )
    again = build_study(
        MODEL, MIXED, method, n_replicates=3, name="s1", metadata={"owner": "ana"}, **kwargs
    )
    assert ids(study.parameter_sets) == ids(again.parameter_sets)
    assert study.sampling_method == method
    assert study.parameter_space == MIXED
    assert study.n_replicates == 3 and study.n_tasks == 16 * 3
    assert study.metadata["owner"] == "ana" and study.metadata["sampling.method"] == method
    if method == "grid":
        assert study.metadata["sampling.n_levels"] == '{"beta": 2, "d": 2, "n": 4}'
    else:
        assert study.metadata["sampling.seed"] == "3" and study.metadata["sampling.n"] == "16"
        other = build_study(MODEL, MIXED, method, n=16, seed=4)
        assert set(ids(other.parameter_sets)).isdisjoint(ids(study.parameter_sets))
    job = study.bind(BUNDLE, job_id="job-1")
    assert job.n_tasks == 48 and job.batches[0].sampling_method == method


def test_build_study_from_a_table(tmp_path):
    path = write_csv(tmp_path / "t.csv", [["beta", "n", "d"], ["0.2", "3", "0.1"]])
    study = build_study(MODEL, MIXED, "explicit", table=path, scenario="lockdown")
    assert study.sampling_method == "explicit" and study.metadata["sampling.table"] == str(path)
    assert study.parameter_sets[0].params == {"beta": 0.2, "n": 3, "d": 0.1}
    assert study.entrypoint == MODEL + "/lockdown"
    no_space = build_study(MODEL, None, "explicit", table=[{"x": 1}])
    assert no_space.parameter_space is None


def test_build_study_sobol_records_scramble():
    study = build_study(MODEL, FLOATS, "sobol", n=8, seed=1, scramble=False)
    assert study.metadata["sampling.scramble"] == "false"
    assert ids(study.parameter_sets) == ids(sobol(FLOATS, 8, seed=99, scramble=False))


@pytest.mark.parametrize(
    ("method", "kwargs", "message"),
    [
        ("random", {"n": 4}, r"method 'random' needs seed .*hint: pass seed=<int>"),
        ("grid", {"n_levels": 2, "n": 4}, r"method 'grid' does not take n .*takes n_levels"),
        ("lhs", {"n": 4, "seed": 1, "scramble": True}, r"method 'lhs' does not take scramble"),
        ("explicit", {}, r"method 'explicit' needs table"),
        ("mcmc", {}, r"unknown sampling method 'mcmc'.*grid, random, sobol, lhs, explicit"),
        ("random", {"n": 4, "seed": 1, "n_replicates": 0}, r"n_replicates must be a positive int"),
    ],
)
def test_build_study_refuses_arguments_that_do_not_fit(method, kwargs, message):
    with pytest.raises(SamplingError, match=message):
        build_study(MODEL, MIXED, method, **kwargs)


def test_build_study_needs_a_space_to_sample_and_owns_its_fields():
    with pytest.raises(SamplingError, match="method 'sobol' needs a parameter space"):
        build_study(MODEL, None, "sobol", n=4, seed=1)
    with pytest.raises(TypeError, match="build_study sets parameter_sets itself"):
        build_study(MODEL, MIXED, "random", n=4, seed=1, parameter_sets=[])
