"""Presenting results: one plain-text table for the terminal, one JSON file for later runs."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .common import MIB, Result

__all__ = ["format_machine", "format_table", "write_json"]

_COLUMNS = ("benchmark", "value", "baseline", "ratio", "target", "ok", "noise")


def _number(x: float | None, unit: str = "") -> str:
    if x is None or math.isnan(x):
        return "-"
    if math.isinf(x):
        return "inf"
    if x == 0 or 1e-4 <= abs(x) < 100_000:
        text = f"{x:.3g}" if abs(x) < 100 else f"{x:,.0f}"
    else:
        text = f"{x:.2e}"
    return f"{text} {unit}".rstrip()


def _row(r: Result) -> tuple[str, ...]:
    baseline = "-"
    if r.baseline is not None:
        baseline = f"{_number(r.baseline_value, r.unit)} ({r.baseline})"
    ok = {True: "pass", False: "FAIL", None: ""}[r.passed]
    noise = "-" if r.spread is None else f"±{100 * r.spread / 2:.0f}%"
    return (
        r.name,
        _number(r.value, r.unit),
        baseline,
        "-" if r.ratio is None else f"{_number(r.ratio)}x",
        "" if r.target is None else r.target.describe(r.unit),
        ok,
        noise,
    )


def format_table(results: Sequence[Result]) -> str:
    """Aligned columns; `noise` is half the range of the repetitions, relative to the median."""
    rows = [_COLUMNS, *(_row(r) for r in results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"- {r.name}: {r.notes}" for r in results if r.notes]
    return "\n".join(lines + (["", *notes] if notes else []))


def format_machine(machine: dict[str, Any]) -> str:
    """One line: what the figures were measured on."""
    mem = machine.get("memory_bytes")
    blas = machine.get("openblas_env") or {}
    return (
        f"machine: {machine.get('usable_cores')}/{machine.get('cores')} cores, "
        f"{(mem or 0) / (1024 * MIB):.0f} GiB, {machine.get('cpu_model')}, "
        f"{machine.get('python')}, {machine.get('openssl')}, "
        f"OPENBLAS env: {blas or 'unset'}, load {machine.get('load_average')}"
    )


def _finite(obj: Any) -> Any:
    """NaN and infinities as null: strict JSON has no spelling for them."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write the run's document (machine, results, timings) as indented, strict JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_finite(document), indent=2, allow_nan=False) + "\n")
    tmp.replace(path)
