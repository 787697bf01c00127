"""Every benchmark, end to end through `python -m bench`, at tiny sizes, so none can rot.

Real servers (the registry, ...) are started by the harness itself, so this is marked
`integration`. Timing targets are not asserted (they measure a shared machine), but every
figure that is exact, such as the bytes a re-push sends, is.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from typing import Any

import pytest

from bench.__main__ import cli
from bench.harness import discover

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """All benchmarks once at the smoke profile: exit code, JSON document, printed table."""
    path = tmp_path_factory.mktemp("bench") / "smoke.json"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli(["--profile", "smoke", "--json", str(path)])
    return {"code": code, "doc": json.loads(path.read_text()), "table": out.getvalue()}


def _results(doc: dict[str, Any], benchmark: str) -> dict[str, dict[str, Any]]:
    run = next(b for b in doc["benchmarks"] if b["name"] == benchmark)
    return {r["name"]: r for r in run["results"]}


def test_every_benchmark_ran_without_error(smoke: dict[str, Any]) -> None:
    doc = smoke["doc"]
    errors = {b["name"]: b["error"] for b in doc["benchmarks"] if b["error"]}
    assert not errors, errors
    assert smoke["code"] == 0
    assert [b["name"] for b in doc["benchmarks"]] == list(discover())
    assert doc["profile"] == "smoke" and doc["command"].startswith("python -m bench")
    names = [r["name"] for b in doc["benchmarks"] for r in b["results"]]
    assert len(names) == len(set(names)), "result names must be unique across benchmarks"


@pytest.mark.parametrize("benchmark", list(discover()))
def test_results_are_complete_ratios(smoke: dict[str, Any], benchmark: str) -> None:
    results = _results(smoke["doc"], benchmark)
    assert results, f"{benchmark} returned no results"
    for name, r in results.items():
        assert math.isfinite(r["value"]) and r["unit"], r
        assert r["baseline"] and r["baseline_value"] is not None, f"{name} has no baseline"
        assert r["ratio"] == pytest.approx(r["value"] / r["baseline_value"]), name
        if r["target"] is not None:
            assert r["passed"] in (True, False), name
        assert name in smoke["table"]


def test_machine_is_recorded(smoke: dict[str, Any]) -> None:
    machine = smoke["doc"]["machine"]
    assert machine["cores"] >= 1 and machine["memory_bytes"] > 0
    assert machine["cpu_model"] and machine["python"].startswith("CPython 3.")
    assert isinstance(machine["openblas_env"], dict) and len(machine["load_average"]) == 3


def test_bundle_exact_figures(smoke: dict[str, Any]) -> None:
    results = _results(smoke["doc"], "bundle")
    repush = [r for name, r in results.items() if name.startswith("bundle.repush.")]
    assert len(repush) == 2
    for r in repush:  # only the changed file's bytes went out
        assert r["value"] == r["baseline_value"] > 0 and r["passed"] is True
    memory = [r for name, r in results.items() if name.startswith("bundle.memory.")]
    assert len(memory) == 2 and all(0 < r["value"] < 100 for r in memory)
    for prefix in ("hash", "register", "push", "pull"):
        assert any(name.startswith(f"bundle.{prefix}.") for name in results), prefix
