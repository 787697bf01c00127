"""ModelOps benchmarks: every figure a ratio against a baseline measured in the same run.

Run them with `python -m bench [names...] [--quick] [--json PATH]` from the repository root.
A benchmark is a module `bench/bench_<name>.py` exposing `run(args: BenchArgs) -> list[Result]`;
the harness finds it by that name, gives it a temporary folder and lazily started real servers
(`args.servers`), prints one table and writes JSON. See docs/benchmarks.md for the figures.
"""

from .common import MIB, BenchArgs, Case, Result, Samples, Target, interleaved

__all__ = ["MIB", "BenchArgs", "Case", "Result", "Samples", "Target", "interleaved"]
