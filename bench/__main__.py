"""`python -m bench [names...] [--quick] [--json PATH]`: run benchmarks, print a table, save JSON.

Exit status: 0 when every benchmark ran (figures that miss their target are reported, not
fatal, unless --strict), 1 when a target was missed under --strict, 2 when a benchmark failed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import get_args

_REPO_ROOT = Path(__file__).resolve().parent.parent
if str(_REPO_ROOT) not in sys.path:  # tests.support.servers lives at the repository root
    sys.path.insert(0, str(_REPO_ROOT))

# E402: these imports need the sys.path entry above when run from another folder.
from bench.common import Profile  # noqa: E402
from bench.harness import UnknownBenchmark, discover, run_benchmarks  # noqa: E402
from bench.report import format_machine, format_table, write_json  # noqa: E402
from modelops_runtime.logging import configure_logging  # noqa: E402

__all__ = ["cli", "main"]

DEFAULT_JSON = _REPO_ROOT / "bench" / "results" / "latest.json"
LOOPBACK = ("127.0.0.1", "localhost")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run ModelOps benchmarks; every figure is a ratio against a baseline "
        "measured in the same run.",
    )
    parser.add_argument(
        "names", nargs="*", help=f"benchmarks to run (default: all of {', '.join(discover())})"
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, few repetitions (= --profile quick)"
    )
    parser.add_argument(
        "--profile",
        choices=get_args(Profile),
        help="full (default): the documented figures; quick: ~20 s each; smoke: tiny, for tests",
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write JSON")
    parser.add_argument("--repeat", type=int, help="repetitions per figure (default per figure)")
    parser.add_argument(
        "--set",
        dest="options",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a benchmark option, e.g. --set small_files=2000 (see docs/benchmarks.md)",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--keep", action="store_true", help="keep the temporary files")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    return parser


def _no_proxy_for_loopback() -> None:
    """Benchmarks talk to servers on 127.0.0.1: a machine's HTTP proxy must not sit between."""
    for var in ("NO_PROXY", "no_proxy"):
        current = [h for h in os.environ.get(var, "").split(",") if h]
        os.environ[var] = ",".join([*current, *(h for h in LOOPBACK if h not in current)])


def cli(argv: list[str] | None = None) -> int:
    """The command without process-wide set-up (logging, proxies), so tests can call it."""
    args = _parser().parse_args(argv)
    if args.list:
        print("\n".join(discover()))
        return 0
    if args.quick and args.profile not in (None, "quick"):
        _parser().error("--quick contradicts --profile " + args.profile)
    profile: Profile = args.profile or ("quick" if args.quick else "full")
    if args.repeat is not None and args.repeat < 1:
        _parser().error("--repeat must be at least 1")
    options = dict(opt.partition("=")[::2] for opt in args.options)
    if any("=" not in opt or not opt.partition("=")[0] for opt in args.options):
        _parser().error("--set takes NAME=VALUE")
    try:
        report = run_benchmarks(
            args.names,
            profile=profile,
            command=" ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
            repeat=args.repeat,
            options=options,
            keep_workdir=args.keep,
        )
    except UnknownBenchmark as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_machine(report.machine))
    print(f"load average at the end: {report.load_average_end}")
    print()
    print(format_table(report.results))
    for name, error in report.errors.items():
        print(f"\nbenchmark {name} FAILED:\n{error}", file=sys.stderr)
    write_json(args.json, report.to_json())
    print(f"\nresults written to {args.json}")
    if report.errors:
        return 2
    if args.strict and any(r.passed is False for r in report.results):
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m bench`: quiet library logs (warnings only) and no proxy for loopback."""
    configure_logging("bench", level=os.environ.get("MODELOPS_LOG_LEVEL", "WARNING"))
    _no_proxy_for_loopback()
    return cli(argv)


if __name__ == "__main__":
    sys.exit(main())
