"""The end-to-end benchmark at tiny sizes, through `python -m bench e2e`, so it cannot rot.

It starts a real embedded stack (nats-server, registrar, bundler, submitter, local runners) and
a Dask LocalCluster, so it is marked `e2e`. Timings are not asserted (a shared machine), but
that every figure exists with its baseline, that jobs completed (a failed job raises), and that
nothing is left running are.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import psutil
import pytest

from bench.__main__ import cli

pytestmark = pytest.mark.e2e

EXPECTED = {
    *(f"e2e.{w}.{f}" for w in ("noop", "sir20", "sir500") for f in ("throughput", "overhead")),
    "e2e.sir20.vs_ideal",
    "e2e.sir500.vs_ideal",
    "e2e.latency.warm",
    "e2e.latency.cold",
    *(
        f"e2e.scale.{n}.{f}"
        for n in (20, 60)
        for f in ("per_task", "per_task_steady", "stack_rss", "runner_rss")
    ),
}


def _ours() -> set[int]:
    """Processes of this test's making still alive: children of this process.

    multiprocessing's resource_tracker (started once per interpreter by Dask's spawn of its
    workers) lives until this interpreter exits by design, so it is not a leftover.
    """
    found = set()
    for p in psutil.Process().children(recursive=True):
        try:
            if any("resource_tracker" in part for part in p.cmdline()):
                continue
        except psutil.Error:
            continue
        found.add(p.pid)
    return found


def test_e2e_benchmark_smoke(tmp_path: Path) -> None:
    before = _ours()
    path = tmp_path / "e2e.json"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli(
            [
                "e2e",
                "--profile",
                "smoke",
                "--set",
                "scale_sizes=20,60",
                "--set",
                "noop_tasks=20",
                "--json",
                str(path),
            ]
        )
    doc = json.loads(path.read_text())
    (run,) = doc["benchmarks"]
    assert run["error"] is None, run["error"]
    assert code == 0
    results = {r["name"]: r for r in run["results"]}
    assert set(results) == EXPECTED
    for name, r in results.items():
        assert math.isfinite(r["value"]) and r["value"] >= 0, r
        assert r["baseline_value"] is not None and r["ratio"] is not None, name
        assert name in out.getvalue()
    # the memory sampler saw the stack and the runner (and its workers)
    assert results["e2e.scale.20.stack_rss"]["value"] > 20
    assert results["e2e.scale.20.runner_rss"]["value"] > 20
    # a noop study has more tasks than a tiny SIR one, each much cheaper: both ran for real
    assert results["e2e.sir500.throughput"]["value"] < results["e2e.noop.throughput"]["value"]
    leftovers = [p for p in _ours() - before if psutil.pid_exists(p)]
    alive = [p for p in leftovers if psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"processes left running: {alive}"
