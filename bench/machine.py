"""The machine a benchmark ran on, recorded beside its figures so they can be compared later.

Ratios travel between machines better than seconds do, but not perfectly: core count, the CPU,
OpenSSL's version and `OPENBLAS_*` (which picks numpy's kernels) all move them, and the load
average says whether someone else was using the machine meanwhile.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["load_average", "machine_info"]

_REPO_ROOT = Path(__file__).resolve().parent.parent


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _command_output(argv: list[str]) -> str | None:
    """First line a command prints, or None when it is missing or fails (recorded, not fatal)."""
    try:
        out = subprocess.run(
            argv, capture_output=True, text=True, timeout=10, check=True, cwd=_REPO_ROOT
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else ""


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def machine_info() -> dict[str, Any]:
    """Cores, memory, CPU model, Python, OpenSSL, OPENBLAS env, load and the git commit."""
    dirty = _command_output(["git", "status", "--porcelain", "--untracked-files=no"])
    return {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "memory_bytes": _memory_bytes(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "python_executable": sys.executable,
        "openssl": _command_output(["openssl", "version"]),
        "openblas_env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("OPENBLAS")},
        "load_average": load_average(),
        "git_commit": _command_output(["git", "rev-parse", "HEAD"]),
        "git_dirty": bool(dirty) if dirty is not None else None,
    }
