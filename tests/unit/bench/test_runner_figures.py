"""The runner benchmark's pure arithmetic: steady rates and the paired efficiency."""

from __future__ import annotations

import pytest

from bench.bench_runner import Figures, Rate, _steady_rate, paired_efficiency


def test_paired_efficiency_divides_each_repetition_by_its_own_bare_loop() -> None:
    # the machine got 20% slower for the third repetition: both runs of it saw that
    ours = Figures([Rate(95.0, 0.0), Rate(96.0, 0.0), Rate(76.0, 0.0)])
    bare = Figures([Rate(100.0, 0.0), Rate(100.0, 0.0), Rate(80.0, 0.0)])
    paired = paired_efficiency(ours, bare)
    assert paired.values == pytest.approx((0.95, 0.96, 0.95))
    assert paired.median == pytest.approx(0.95)
    # the ratio of the medians mixes repetitions: 95 / 100
    assert ours.rate.median / bare.rate.median == pytest.approx(0.95)


def test_paired_efficiency_needs_one_bare_run_per_repetition() -> None:
    with pytest.raises(ValueError):
        paired_efficiency(Figures([Rate(1.0, 0.0)]), Figures([]))


def test_steady_rate_counts_cpu_over_the_tasks_after_the_first_sample() -> None:
    finished = [10.0, 10.5, 11.0, 12.0, 12.0]
    cpu = [{"runner": 1.0, "workers": 2.0}, {"runner": 1.3, "workers": 4.0}]
    rate = _steady_rate(finished, cpu, cpu_from=10.2)
    assert rate.per_s == pytest.approx(4 / 2.0)
    assert rate.split == pytest.approx({"runner": 300 / 4, "workers": 2000 / 4})
    assert rate.cpu_ms == pytest.approx(575.0)


def test_steady_rate_can_skip_a_warm_up() -> None:
    finished = [10.0, 10.1, 11.0, 11.5, 12.0]  # the first two overlapped the publishing
    cpu = [{"runner": 1.0}, {"runner": 1.3}]
    rate = _steady_rate(finished, cpu, cpu_from=9.0, warmup=2)
    assert rate.per_s == pytest.approx(2 / 1.0)  # from the third to the last
    assert rate.split == pytest.approx({"runner": 300 / 5})  # CPU: every task after cpu_from
    two = _steady_rate([10.0, 10.5], cpu, cpu_from=9.0, warmup=5)  # never fewer than two
    assert two.per_s == pytest.approx(1 / 0.5)
