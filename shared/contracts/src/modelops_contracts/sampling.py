"""Sampling strategies: a ParameterSpace in, a list of ParameterSets (or a study) out.

Needs the `[sampling]` extra (numpy, scipy); the package's `__init__` does not import it.

Every sampler draws points in the unit cube and maps them with one rule (`map_unit_samples`):

- float: ``lower + u * (upper - lower)``; log-scaled: the same in log space, then ``exp``;
- int: ``floor(lower + u * (upper - lower + 1))`` clamped to ``upper``, so each integer is
  equally likely; log-scaled: the same over ``[log(lower), log(upper + 1))``, so integer
  ``i`` has weight ``log((i + 1) / i)`` (the discrete log-uniform).

Values come out as plain Python ``float`` / ``int``, never numpy scalars, so ids hash
canonically.

Duplicates. `SimulationStudy` rejects repeated sets. Sampled points repeat only when the int
mapping puts two draws on one integer combination (all-int spaces); `random`, `sobol` and
`latin_hypercube` keep the first occurrence, drop the repeats and warn with
`DuplicatePointsWarning` (turn it into an error with
``warnings.simplefilter("error", DuplicatePointsWarning)``). `grid` never makes repeats: an int
parameter with fewer integers than levels uses each integer once. A repeated row in an
explicit table is the user's data, so `from_table` raises instead.

Determinism. The same arguments and seed give the same sets on the same numpy and scipy
versions (the tests pin a golden design, so an upgrade that changes a stream is noticed). A
study stores its sets, so results stay traceable even if a stream changes later.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import numbers
import os
import tomllib
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy.stats import qmc

from .domain import ParameterSet, ParameterSpace, ParameterSpec, Scalar, SimulationStudy
from .errors import ContractError, InvalidMessage

__all__ = [
    "METHODS",
    "DuplicatePointsWarning",
    "Method",
    "SamplingError",
    "SobolBalanceWarning",
    "build_study",
    "from_table",
    "grid",
    "latin_hypercube",
    "load_space",
    "map_unit_samples",
    "parse_space",
    "random",
    "sobol",
]

Method = Literal["grid", "random", "sobol", "lhs", "explicit"]
METHODS: tuple[str, ...] = ("grid", "random", "sobol", "lhs", "explicit")
TableSource = str | os.PathLike[str] | Iterable[Mapping[str, Any]]

_SPEC_KEYS = frozenset({"lower", "upper", "kind", "log"})
_RESERVED_STUDY_KWARGS = ("model", "parameter_sets", "sampling_method", "parameter_space")


class SamplingError(ContractError):
    """A design could not be built: bad sampling arguments, a bad table or space file."""


class DuplicatePointsWarning(UserWarning):
    """Sampled points that mapped onto the same parameter set were dropped."""


class SobolBalanceWarning(UserWarning):
    """A Sobol' sample whose size is not a power of two loses the sequence's balance."""


# ---------------------------------------------------------------- unit cube -> parameters


def map_unit_samples(space: ParameterSpace, unit: Any) -> list[dict[str, Scalar]]:
    """Map an (n, d) array of points in [0, 1) to parameter dicts (rules in the module doc).

    Repeats are kept: this is the pure mapping; the samplers decide what to do with them.
    """
    u = np.asarray(unit, dtype=float)
    d = len(space.specs)
    if u.ndim != 2 or u.shape[1] != d:
        raise SamplingError(f"unit samples have shape {u.shape}, the space needs (n, {d})")
    if u.size and not (u.min() >= 0.0 and u.max() <= 1.0):  # also catches NaN
        raise SamplingError("unit samples must lie in [0, 1]")
    columns = [_map_column(spec, u[:, j]) for j, spec in enumerate(space.specs)]
    names = space.names
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def _map_column(spec: ParameterSpec, u: np.ndarray) -> list[Any]:
    lo, hi = spec.lower, spec.upper
    if spec.kind == "int":
        top = hi + 1.0
        if spec.log:
            x = np.exp(math.log(lo) + u * (math.log(top) - math.log(lo)))
        else:
            x = lo + u * (top - lo)
        return np.clip(np.floor(x), lo, hi).astype(np.int64).tolist()
    if spec.log:
        x = np.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
        x = np.where(u <= 0.0, lo, x)  # exp(log(lo)) can miss lo by an ulp
    else:
        x = lo + u * (hi - lo)
    return np.clip(x, lo, hi).astype(float).tolist()  # clip: rounding may overshoot a bound


def _dedupe(rows: list[dict[str, Scalar]], method: str) -> list[ParameterSet]:
    """ParameterSets in draw order, keeping the first of any repeats (warns if it drops)."""
    seen: set[str] = set()
    out = []
    for params in rows:
        ps = ParameterSet(params=params)
        if ps.param_id not in seen:
            seen.add(ps.param_id)
            out.append(ps)
    dropped = len(rows) - len(out)
    if dropped:
        warnings.warn(
            f"{method}: {dropped} of {len(rows)} sampled points repeated an earlier point after "
            f"mapping to integers and were dropped; {len(out)} distinct sets remain "
            "(widen the int ranges, add a float parameter, or use grid for a full enumeration)",
            DuplicatePointsWarning,
            stacklevel=3,
        )
    return out


# ---------------------------------------------------------------- samplers


def random(space: ParameterSpace, n: int, seed: int) -> list[ParameterSet]:
    """`n` independent uniform draws (log-uniform for log params) from numpy's PCG64."""
    _check_count("n", n)
    rng = np.random.default_rng(_check_seed(seed))
    return _dedupe(map_unit_samples(space, rng.random((n, len(space.specs)))), "random")


def sobol(space: ParameterSpace, n: int, seed: int, scramble: bool = True) -> list[ParameterSet]:
    """The first `n` points of a seeded (Owen-scrambled by default) Sobol' sequence.

    Balance needs n = 2^k. Other sizes are allowed and warn once, with SobolBalanceWarning:
    we draw the next power of two and keep the first n points (the same points scipy's
    `random(n)` gives), so scipy's own warning never fires as a second one.
    """
    _check_count("n", n)
    m = max(0, (n - 1).bit_length())
    if n != 2**m:
        warnings.warn(
            f"sobol: n={n} is not a power of two, so the sample loses the Sobol' balance "
            f"properties; use n={2 ** (m - 1) if m else 1} or n={2**m}",
            SobolBalanceWarning,
            stacklevel=2,
        )
    engine = qmc.Sobol(len(space.specs), scramble=scramble, rng=_check_seed(seed))
    unit = engine.random_base2(m)[:n]
    return _dedupe(map_unit_samples(space, unit), "sobol")


def latin_hypercube(space: ParameterSpace, n: int, seed: int) -> list[ParameterSet]:
    """A seeded Latin hypercube: each of the n equal strata of every dimension is hit once."""
    _check_count("n", n)
    engine = qmc.LatinHypercube(len(space.specs), rng=_check_seed(seed))
    return _dedupe(map_unit_samples(space, engine.random(n)), "latin_hypercube")


def grid(
    space: ParameterSpace, n_levels: int | Mapping[str, int], *, max_points: int = 1_000_000
) -> list[ParameterSet]:
    """Full factorial over per-parameter levels, last parameter varying fastest.

    Float levels are evenly spaced from lower to upper (geometric for log params), rounded to
    15 significant digits so they read as typed; one level is the (geometric) midpoint. An
    int parameter takes distinct integers only: as many as asked, spread the same way and
    rounded, or every integer once if the range holds fewer.
    Refuses designs above `max_points` points rather than exhaust memory.
    """
    levels = [
        _levels(spec, k)
        for spec, k in zip(space.specs, _level_counts(space, n_levels), strict=True)
    ]
    total = math.prod(len(lv) for lv in levels)
    if total > max_points:
        sizes = " x ".join(str(len(lv)) for lv in levels)
        raise SamplingError(
            f"grid would have {total} points ({sizes}), more than max_points={max_points}",
            hint="use fewer levels, a sampler (sobol, lhs), or raise max_points",
        )
    names = space.names
    return [
        ParameterSet(params=dict(zip(names, point, strict=True)))
        for point in itertools.product(*levels)
    ]


def _level_counts(space: ParameterSpace, n_levels: int | Mapping[str, int]) -> list[int]:
    if isinstance(n_levels, Mapping):
        unknown = sorted(set(n_levels) - set(space.names))
        missing = [name for name in space.names if name not in n_levels]
        if unknown or missing:
            raise SamplingError(
                f"n_levels must name every parameter exactly; unknown: {unknown or 'none'}, "
                f"missing: {missing or 'none'}",
                hint=f"the space declares {', '.join(space.names)}",
            )
        counts = [n_levels[name] for name in space.names]
    else:
        counts = [n_levels] * len(space.specs)
    for name, k in zip(space.names, counts, strict=True):
        _check_count(f"n_levels for {name!r}", k)
    return counts


def _levels(spec: ParameterSpec, k: int) -> list[Any]:
    if spec.kind == "int":
        return _int_levels(spec, k)
    lo, hi = spec.lower, spec.upper
    if k == 1:
        return [_tidy(math.exp((math.log(lo) + math.log(hi)) / 2) if spec.log else lo / 2 + hi / 2)]
    values = [_tidy(v) for v in _spaced(spec.log, lo, hi, k)]
    values[0], values[-1] = float(lo), float(hi)  # exact endpoints
    return sorted({min(max(v, lo), hi) for v in values})  # a tiny range may round levels together


def _tidy(x: float) -> float:
    """15 significant digits: 0.1..0.5 in 3 levels gives 0.3, not 0.30000000000000004."""
    return float(f"{x:.15g}")


def _spaced(log: bool, lo: float, hi: float, k: int) -> list[float]:
    return (np.geomspace(lo, hi, k) if log else np.linspace(lo, hi, k)).tolist()


def _int_levels(spec: ParameterSpec, k: int) -> list[int]:
    lo, hi = int(spec.lower), int(spec.upper)
    if k >= hi - lo + 1:
        return list(range(lo, hi + 1))
    if k == 1:
        targets = [math.exp((math.log(lo) + math.log(hi)) / 2) if spec.log else (lo + hi) / 2]
    else:
        targets = _spaced(spec.log, lo, hi, k)
    out: list[int] = []
    for i, t in enumerate(targets):
        # round half up, then push past the previous level while leaving room for the rest:
        # geometric spacing crowds the low end, and k <= range size keeps this feasible
        v = max(math.floor(t + 0.5), out[-1] + 1 if out else lo)
        out.append(min(v, hi - (k - 1 - i)))
    return out


def _check_count(what: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SamplingError(f"{what} must be a positive int, got {value!r}")
    return value


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SamplingError(
            f"seed must be a non-negative int, got {seed!r}",
            hint="the same seed always gives the same sets; record it with the study",
        )
    return seed


# ---------------------------------------------------------------- explicit tables


def from_table(source: TableSource, space: ParameterSpace | None = None) -> list[ParameterSet]:
    """Explicit sets from a CSV or Parquet file (by suffix) or an iterable of dicts.

    With a space, columns must be exactly its parameters, values are typed per spec (an int
    parameter needs a whole number: `3` or `3.0`, not `3.5`) and checked against its range.
    Without one, CSV text becomes int, else float, else str. Rows are numbered from 1; a
    repeated row is an error, since replicates come from `n_replicates`.
    """
    rows = _read_rows(source)
    if not rows:
        raise SamplingError(f"table {_source_name(source)} has no rows")
    columns = list(space.names) if space is not None else list(rows[0][1])
    out: list[ParameterSet] = []
    first_row: dict[str, str] = {}
    for where, raw in rows:
        _check_columns(where, raw, columns, space)
        if space is not None:
            params = {s.name: _typed(raw[s.name], s, where) for s in space.specs}
        else:
            params = {c: _inferred(raw[c], where, c) for c in columns}
        ps = ParameterSet(params=params)
        if ps.param_id in first_row:
            raise SamplingError(
                f"{where} repeats {first_row[ps.param_id]}",
                hint="list each parameter set once and use n_replicates for repeats",
            )
        first_row[ps.param_id] = where
        out.append(ps)
    return out


def _source_name(source: TableSource) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else "<rows>"


def _read_rows(source: TableSource) -> list[tuple[str, Mapping[str, Any]]]:
    """(label, row) pairs; the label names the row (and line or file) for error messages."""
    if not isinstance(source, (str, os.PathLike)):
        rows = []
        for i, row in enumerate(source, start=1):
            if not isinstance(row, Mapping):
                raise SamplingError(
                    f"row {i} is a {type(row).__name__}, not a mapping of column to value"
                )
            rows.append((f"row {i}", row))
        return rows
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path)
    if suffix in (".parquet", ".pq"):
        return _read_parquet(path)
    raise SamplingError(
        f"cannot tell the format of table {path}", hint="name it *.csv or *.parquet"
    )


def _read_csv(path: Path) -> list[tuple[str, Mapping[str, Any]]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheets write a BOM
            lines = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SamplingError(f"cannot read CSV table {path}: {exc}") from exc
    if not lines:
        raise SamplingError(
            f"CSV table {path} is empty", hint="the first line must name the parameters"
        )
    header = [name.strip() for name in lines[0]]
    _check_header(header, str(path))
    rows = []
    for line_no, fields in enumerate(lines[1:], start=2):
        if not fields or all(not f.strip() for f in fields):
            continue  # blank line
        where = f"row {len(rows) + 1} (line {line_no} of {path})"
        if len(fields) != len(header):
            raise SamplingError(f"{where} has {len(fields)} fields, the header has {len(header)}")
        rows.append((where, dict(zip(header, (f.strip() for f in fields), strict=True))))
    return rows


def _read_parquet(path: Path) -> list[tuple[str, Mapping[str, Any]]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise SamplingError(
            f"reading Parquet table {path} needs pyarrow, which is not installed",
            hint="pip install pyarrow, or give the table as CSV",
        ) from exc
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise SamplingError(f"cannot read Parquet table {path}: {exc}") from exc
    _check_header(table.schema.names, str(path))
    return [(f"row {i} of {path}", row) for i, row in enumerate(table.to_pylist(), start=1)]


def _check_header(names: Sequence[str], where: str) -> None:
    if any(not name for name in names):
        raise SamplingError(f"table {where} has a column with no name")
    dupes = sorted({n for n in names if list(names).count(n) > 1})
    if dupes:
        raise SamplingError(f"table {where} repeats column(s) {', '.join(dupes)}")


def _check_columns(
    where: str, row: Mapping[str, Any], columns: list[str], space: ParameterSpace | None
) -> None:
    extra = [c for c in row if c not in columns]
    missing = [c for c in columns if c not in row]
    if extra or missing:
        expected = "the space declares" if space is not None else "the first row has"
        raise SamplingError(
            f"{where}: unknown column(s) {extra or 'none'}, missing column(s) {missing or 'none'}",
            hint=f"{expected} {', '.join(columns)}",
        )


def _typed(value: Any, spec: ParameterSpec, where: str) -> int | float:
    """`value` as the spec's kind, in range, or a SamplingError naming row and column."""
    at = f"{where}, column {spec.name!r}"
    number = _parse_number(value, at) if isinstance(value, str) else value
    if isinstance(number, bool) or not isinstance(number, numbers.Real):
        raise SamplingError(f"{at}: expected a number, got {value!r}")
    if isinstance(number, numbers.Integral):
        typed: int | float = int(number) if spec.kind == "int" else float(number)
    else:
        x = float(number)
        if not math.isfinite(x):
            raise SamplingError(f"{at}: {value!r} is not a finite number")
        if spec.kind == "int" and not x.is_integer():
            raise SamplingError(f"{at}: int parameter needs a whole number, got {value!r}")
        typed = int(x) if spec.kind == "int" else x
    try:
        spec.check(typed)
    except InvalidMessage as exc:
        raise SamplingError(f"{at}: {exc.message}", hint=exc.hint) from exc
    return typed


def _inferred(value: Any, where: str, column: str) -> Scalar:
    """Without a space: text -> int, else float, else str; Python/numpy numbers kept."""
    at = f"{where}, column {column!r}"
    if value is None or value == "":
        raise SamplingError(f"{at} is empty")
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
        try:
            value = float(value)
        except ValueError:
            return value
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        x = float(value)
        if not math.isfinite(x):
            raise SamplingError(f"{at}: {value!r} is not a finite number")
        return x
    raise SamplingError(f"{at}: {type(value).__name__} {value!r} is not a bool, int, float or str")


def _parse_number(text: str, at: str) -> int | float:
    if not text.strip():
        raise SamplingError(f"{at} is empty")
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise SamplingError(f"{at}: expected a number, got {text!r}") from None


# ---------------------------------------------------------------- parameter-space files


def load_space(path: str | os.PathLike[str]) -> ParameterSpace:
    """Read a ParameterSpace from YAML (.yaml/.yml), JSON or TOML, shaped as::

        parameters:
          beta: {lower: 0.1, upper: 0.5}
          n: {lower: 1, upper: 10, kind: int}
          d: {lower: 1.0e-3, upper: 1, log: true}

    Parameter order is file order. Other top-level keys are ignored, so a space can live in a
    larger config file.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json", ".toml"):
        raise SamplingError(
            f"cannot tell the format of parameter-space file {p}",
            hint="name it *.yaml, *.json or *.toml",
        )
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SamplingError(f"cannot read parameter-space file {p}: {exc}") from exc
    return parse_space(_parse_text(text, suffix, p), source=str(p))


def _parse_text(text: str, suffix: str, path: Path) -> Any:
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise SamplingError(f"parameter-space file {path} is not valid JSON: {exc}") from exc
    if suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SamplingError(f"parameter-space file {path} is not valid TOML: {exc}") from exc
    try:
        import yaml
    except ImportError as exc:
        raise SamplingError(
            f"reading YAML file {path} needs PyYAML", hint="pip install pyyaml, or use JSON or TOML"
        ) from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SamplingError(f"parameter-space file {path} is not valid YAML: {exc}") from exc


def parse_space(data: Any, *, source: str = "parameter space") -> ParameterSpace:
    """Build a ParameterSpace from already-parsed data of the `load_space` shape."""
    params = data.get("parameters") if isinstance(data, Mapping) else None
    if not isinstance(params, Mapping) or not params:
        raise SamplingError(
            f"{source} has no 'parameters' mapping",
            hint="write parameters: {beta: {lower: 0.1, upper: 0.5}, ...}",
        )
    specs = []
    for name, body in params.items():
        at = f"{source}: parameter {name!r}"
        if not isinstance(body, Mapping):
            raise SamplingError(f"{at} must be a mapping with lower and upper, got {body!r}")
        unknown = sorted(set(body) - _SPEC_KEYS)
        if unknown:
            raise SamplingError(
                f"{at} has unknown key(s) {', '.join(map(str, unknown))}",
                hint="allowed: kind, log, lower, upper",
            )
        kind = body.get("kind", "float")
        log = body.get("log", False)
        if kind not in ("float", "int"):
            raise SamplingError(f"{at}: kind must be 'float' or 'int', got {kind!r}")
        if not isinstance(log, bool):
            raise SamplingError(f"{at}: log must be true or false, got {log!r}")
        try:
            specs.append(
                ParameterSpec(
                    name=str(name),
                    lower=_bound(body, "lower", at),
                    upper=_bound(body, "upper", at),
                    kind=kind,
                    log=log,
                )
            )
        except ValueError as exc:
            if isinstance(exc, SamplingError):
                raise
            raise SamplingError(f"{source}: {exc}") from exc
    return ParameterSpace(specs=specs)


def _bound(body: Mapping[str, Any], key: str, at: str) -> float:
    if key not in body:
        raise SamplingError(f"{at} has no {key!r} bound")
    value = body[key]
    if isinstance(value, str):
        # PyYAML (YAML 1.1) reads `1e-3` as text; accept numeric text rather than surprise
        try:
            value = float(value)
        except ValueError:
            raise SamplingError(f"{at}: {key} must be a number, got {body[key]!r}") from None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SamplingError(f"{at}: {key} must be a number, got {value!r}")
    return float(value)


# ---------------------------------------------------------------- studies


_METHOD_ARGS = {
    "grid": {"n_levels"},
    "random": {"n", "seed"},
    "sobol": {"n", "seed", "scramble"},
    "lhs": {"n", "seed"},
    "explicit": {"table"},
}


def _check_method_args(method: str, space: ParameterSpace | None, given: dict[str, Any]) -> None:
    """Refuse arguments a method would ignore and demand the ones it needs."""
    if method not in _METHOD_ARGS:
        raise SamplingError(
            f"unknown sampling method {method!r}", hint=f"use one of {', '.join(METHODS)}"
        )
    wanted = _METHOD_ARGS[method]
    stray = [k for k, v in given.items() if v is not None and k not in wanted]
    if stray:
        raise SamplingError(
            f"method {method!r} does not take {', '.join(stray)}",
            hint=f"{method} takes {', '.join(sorted(wanted))}",
        )
    missing = [k for k in sorted(wanted - {"scramble"}) if given[k] is None]
    if missing:
        hint = "pass seed=<int>; the same seed always gives the same sets"
        raise SamplingError(
            f"method {method!r} needs {', '.join(missing)}",
            hint=hint if "seed" in missing else None,
        )
    if space is None and method != "explicit":
        raise SamplingError(
            f"method {method!r} needs a parameter space", hint="load one with load_space(path)"
        )


def build_study(
    model: str,
    space: ParameterSpace | None,
    method: Method,
    *,
    n: int | None = None,
    seed: int | None = None,
    n_levels: int | Mapping[str, int] | None = None,
    table: TableSource | None = None,
    scramble: bool | None = None,
    n_replicates: int = 1,
    **study_kwargs: Any,
) -> SimulationStudy:
    """A SimulationStudy whose sets come from one sampling method.

    Arguments per method: grid takes `n_levels`; random, sobol and lhs take `n` and `seed`
    (sobol also `scramble`, default True); explicit takes `table` (space optional). Anything
    else is refused rather than ignored. The method and its arguments are recorded in
    `sampling_method` and `metadata["sampling.*"]`; the space is attached for validation.
    Other keyword arguments (name, scenario, base_seed, config, outputs, metadata) go to the
    study.
    """
    reserved = [k for k in _RESERVED_STUDY_KWARGS if k in study_kwargs]
    if reserved:
        raise TypeError(f"build_study sets {', '.join(reserved)} itself; do not pass them")
    given = {"n": n, "seed": seed, "n_levels": n_levels, "table": table, "scramble": scramble}
    _check_method_args(method, space, given)
    _check_count("n_replicates", n_replicates)
    recorded: dict[str, str] = {"sampling.method": method}
    if method == "explicit":
        sets = from_table(table, space)  # type: ignore[arg-type]  # checked: table given
        recorded["sampling.table"] = _source_name(table)  # type: ignore[arg-type]
    elif method == "grid":
        sets = grid(space, n_levels)  # type: ignore[arg-type]  # checked: both given
        levels = n_levels if isinstance(n_levels, int) else dict(n_levels or {})
        recorded["sampling.n_levels"] = json.dumps(levels, sort_keys=True)
    else:
        sampler = {"random": random, "lhs": latin_hypercube}.get(method)
        if sampler is None:
            sets = sobol(space, n, seed, scramble=scramble is not False)  # type: ignore[arg-type]
            recorded["sampling.scramble"] = str(scramble is not False).lower()
        else:
            sets = sampler(space, n, seed)  # type: ignore[arg-type]  # checked: all given
        recorded |= {"sampling.n": str(n), "sampling.seed": str(seed)}
    metadata = {**dict(study_kwargs.pop("metadata", None) or {}), **recorded}
    return SimulationStudy(
        model=model,
        parameter_sets=sets,
        sampling_method=method,
        n_replicates=n_replicates,
        parameter_space=space,
        metadata=metadata,
        **study_kwargs,
    )
