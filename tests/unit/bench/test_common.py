"""The harness's pure parts: targets, samples, results, interleaved timing, benchmark args."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.common import BenchArgs, Case, Result, Samples, Target, interleaved


@pytest.mark.parametrize(
    ("target", "ratio", "value", "expected"),
    [
        (Target(">=", 0.9), 0.9, 1.0, True),
        (Target(">=", 0.9), 0.89, 1.0, False),
        (Target("<=", 1.3), 1.31, 1.0, False),
        (Target("<", 100, on="value"), 5.0, 99.9, True),
        (Target("<", 100, on="value"), 0.1, 100.0, False),
        (Target("==", 1.0), 1.0, 7.0, True),
        (Target("==", 1.0), 1.0001, 7.0, False),
        (Target(">", 2), None, 7.0, None),
        (Target("<=", 1.3), math.nan, 1.0, None),
    ],
)
def test_target_met(
    target: Target, ratio: float | None, value: float, expected: bool | None
) -> None:
    assert target.met(ratio, value) is expected


def test_target_describe() -> None:
    assert Target("<=", 1.3).describe("s") == "≤ 1.3x"
    assert Target("<", 100, on="value").describe("MiB") == "< 100 MiB"


def test_samples_median_and_spread() -> None:
    s = Samples((1.0, 3.0, 2.0))
    assert s.median == 2.0
    assert s.spread == pytest.approx(1.0)
    assert s.scaled(lambda x: 10 / x).values == (10.0, 10 / 3, 5.0)
    with pytest.raises(ValueError, match="at least one"):
        Samples(())


def test_result_ratio_and_pass() -> None:
    r = Result.compare(
        "x", Samples((2.0, 2.2)), Samples((1.0,)), unit="s", baseline_name="b",
        target=Target("<=", 1.3),
    )  # fmt: skip
    assert r.ratio == pytest.approx(2.1)
    assert r.passed is False
    assert r.to_json()["passed"] is False and r.to_json()["target"]["bound"] == 1.3
    assert Result("y", 1.0, "s").ratio is None and Result("y", 1.0, "s").passed is None
    assert math.isinf(Result("z", 1.0, "B", baseline="b", baseline_value=0.0).ratio or 0)


def test_interleaved_alternates_order_and_skips_warmup() -> None:
    order: list[str] = []
    states: list[object] = []
    cases = {
        "a": Case(lambda s: order.append("a"), prepare=lambda: "state-a",
                  cleanup=states.append),
        "b": Case(lambda s: order.append("b")),
    }  # fmt: skip
    samples = interleaved(cases, repeat=3, warmup=1)
    assert order == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert states == ["state-a"] * 4  # cleanup got what prepare made, every round
    assert {k: len(v.values) for k, v in samples.items()} == {"a": 3, "b": 3}
    with pytest.raises(ValueError, match="at least 1"):
        interleaved(cases, repeat=0)


def test_bench_args_profiles_and_options(tmp_path: Path) -> None:
    args = BenchArgs(workdir=tmp_path, profile="smoke", options={"n": "7", "bad": "x"})
    assert args.quick and args.pick(full=1, quick=2, smoke=3) == 3
    assert args.reps(full=5) == 1
    assert args.option("n", 1, int) == 7 and args.option("m", 1, int) == 1
    with pytest.raises(ValueError, match="--set bad='x'"):
        args.option("bad", 1, int)
    assert args.used_options == {"n", "m", "bad"}
    assert BenchArgs(workdir=tmp_path, repeat=4).reps(full=9) == 4
    assert args.folder("one").is_dir()
    with pytest.raises(FileExistsError):
        args.folder("one")  # each benchmark gets a folder of its own
