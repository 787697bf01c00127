"""A small model project on disk for the bundle unit tests (the seed's StochasticSIR layout)."""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["FILES", "age", "make_project"]

MODEL = """\
import numpy as np
import sir_utils
from sir_utils import step

raise RuntimeError("the model file must never be imported by registration")

OUTPUTS = ["incidence", "prevalence"]


class StochasticSIR:
    outputs = OUTPUTS
    scenarios = {"baseline": {}, "lockdown": {"beta": 0.1}}
    parameters = ("beta", "gamma")

    def simulate(self, params, seed):
        return {"incidence": step(params, seed)}
"""

SIR_UTILS = """\
import math


def step(params, seed):
    return [math.exp(-params["beta"])]
"""

FILES: dict[str, bytes] = {
    "src/model.py": MODEL.encode(),
    "src/sir_utils.py": SIR_UTILS.encode(),
    "src/unused.py": b"x = 1\n",
    "data/params.csv": b"beta,gamma\n0.3,0.1\n",
    "data/nested/contacts.csv": b"a,b\n1,2\n",
    "data/nested/deeper/ages.csv": b"age\n1\n2\n",
    "data/raw/huge.bin": b"\x00" * 1000,
    "data/scratch.tmp": b"temp",
    "data/.DS_Store": b"finder",
    "data/__pycache__/x.cpython-311.pyc": b"pyc",
    ".modelopsignore": b"# test ignores\nraw/\n*.tmp\n",
}


def make_project(
    root: Path, *, reverse: bool = False, files: dict[str, bytes] | None = None
) -> Path:
    """Write the example project under `root` (in reverse order if asked) and return `root`."""
    items = list((files or FILES).items())
    for rel, data in reversed(items) if reverse else items:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def age(root: Path, seconds: float = 3600) -> None:
    """Set every file's mtime `seconds` into the past, so the digest cache may trust it
    (it distrusts files modified within RACY_NS of being hashed)."""
    past = time.time() - seconds
    for dirpath, _, names in os.walk(root):
        for name in names:
            os.utime(os.path.join(dirpath, name), (past, past))


def imported_from(root: Path) -> list[str]:
    """Modules in sys.modules loaded from files under `root` (other tests may import their own
    module called `model`, so the check is by file location, not by name)."""
    import sys

    base = str(root.resolve())
    return sorted(
        name
        for name, mod in list(sys.modules.items())
        if str(getattr(mod, "__file__", None) or "").startswith(base)
    )
