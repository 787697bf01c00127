"""Benchmark discovery and the command line's argument checks (no benchmark runs here)."""

from __future__ import annotations

import pytest

from bench.__main__ import cli
from bench.harness import UnknownBenchmark, discover, load


def test_discover_finds_bench_modules_by_name() -> None:
    found = discover()
    assert found["bundle"] == "bench.bench_bundle"
    assert all(module.startswith("bench.bench_") for module in found.values())
    assert callable(load("bundle").run)


def test_unknown_benchmark_is_named_with_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UnknownBenchmark, match=r"no benchmark named 'nope'; known: .*bundle"):
        load("nope")
    assert cli(["nope"]) == 2
    assert "no benchmark named 'nope'" in capsys.readouterr().err


def test_list_and_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["--list"]) == 0
    assert "bundle" in capsys.readouterr().out.split()
    for argv in (["--set", "novalue"], ["--repeat", "0"], ["--quick", "--profile", "full"]):
        with pytest.raises(SystemExit) as exc:
            cli(argv)
        assert exc.value.code == 2
