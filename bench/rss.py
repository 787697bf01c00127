"""Peak memory of one call, measured in a fresh Python process.

A fresh process, because the harness's own heap (and what earlier benchmarks left in it) would
hide or inflate the figure. The child imports the function first, then resets the kernel's
peak-RSS mark (`5` into /proc/self/clear_refs, Linux >= 4.0), notes VmRSS, calls the function
and reads VmHWM: the growth is the memory the call itself needed, imports excluded.

Run as `python -m bench.rss package.module:function '{"kwarg": ...}'`; prints one JSON line.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelops_runtime.logging import configure_logging

__all__ = ["RssReport", "measure_peak_rss"]

_REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class RssReport:
    """Resident memory of the child before the call and at its peak during the call, in bytes."""

    before: int
    peak: int
    result: Any
    reset: bool = True  # False: the kernel refused the peak reset, so the peak may be the imports'

    @property
    def growth(self) -> int:
        return max(0, self.peak - self.before)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} line (not Linux?)")


def measure_peak_rss(target: str, kwargs: dict[str, Any], *, timeout_s: float = 300) -> RssReport:
    """Run `target` ("module:function") with JSON-able `kwargs` in a fresh interpreter.

    The function's return value must be JSON-able; it comes back as `result`.
    """
    paths = [str(_REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.rss", target, json.dumps(kwargs)],
        cwd=_REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"memory probe {target} exited with {proc.returncode}:\n{proc.stderr[-4000:]}"
        )
    last = proc.stdout.strip().splitlines()[-1]
    data = json.loads(last)
    return RssReport(
        before=data["before"], peak=data["peak"], result=data["result"], reset=data["reset"]
    )


def _child(target: str, kwargs_json: str) -> None:
    module_name, _, func_name = target.partition(":")
    func = getattr(importlib.import_module(module_name), func_name)
    kwargs = json.loads(kwargs_json)
    # Library logs go to stderr, so stdout carries only the JSON line the parent reads.
    configure_logging("bench-rss", level="WARNING", fmt="console", stream=sys.stderr)
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM to the current RSS
        reset = True
    except OSError as exc:  # e.g. a locked-down container: still measure, but say so
        print(f"bench.rss: cannot reset the peak RSS mark ({exc})", file=sys.stderr)
        reset = False
    before = _status_kib("VmRSS") * 1024
    result = func(**kwargs)
    peak = _status_kib("VmHWM") * 1024
    print(json.dumps({"before": before, "peak": peak, "result": result, "reset": reset}))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m bench.rss module:function '{json kwargs}'")
    _child(sys.argv[1], sys.argv[2])
