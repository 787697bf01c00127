"""The table and the JSON file the harness writes."""

from __future__ import annotations

import json
import math
from pathlib import Path

from bench.common import Result, Samples, Target
from bench.report import format_table, write_json


def _results() -> list[Result]:
    return [
        Result.compare(
            "bundle.hash.x", Samples((1500.0, 1510.0)), Samples((1400.0,)), unit="MiB/s",
            baseline_name="openssl", target=Target(">=", 0.9), notes="page cache",
        ),
        Result("bundle.repush.x", 36.0, "B", baseline="size", baseline_value=36.0,
               target=Target("==", 1.0)),
        Result("bundle.only_value", 0.5, "s"),
    ]  # fmt: skip


def test_table_has_one_row_per_result_with_verdicts() -> None:
    text = format_table(_results())
    lines = text.splitlines()
    assert lines[0].split()[:5] == ["benchmark", "value", "baseline", "ratio", "target"]
    row = next(line for line in lines if line.startswith("bundle.hash.x "))
    assert "1,505 MiB/s" in row and "(openssl)" in row and "1.07x" in row and "pass" in row
    assert "= 1x" in next(line for line in lines if line.startswith("bundle.repush.x"))
    assert "- bundle.hash.x: page cache" in lines


def test_json_is_strict_and_keeps_samples(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "latest.json"
    bad = Result("inf", 1.0, "s", baseline="zero", baseline_value=0.0)
    write_json(path, {"results": [r.to_json() for r in [*_results(), bad]], "x": math.nan})
    data = json.loads(path.read_text())  # strict: no NaN / Infinity tokens
    assert data["x"] is None and data["results"][-1]["ratio"] is None
    assert data["results"][0]["samples"] == [1500.0, 1510.0]
    assert data["results"][0]["passed"] is True
    assert not list(path.parent.glob("*.tmp"))
