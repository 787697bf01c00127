"""modelops-contracts installs alone: importing it pulls in msgspec and nothing else of weight."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys

import modelops_contracts

FORBIDDEN = (
    "numpy",
    "scipy",
    "pandas",
    "pyarrow",
    "polars",
    "nats",
    "faststream",
    "structlog",
    "yaml",
    "boto3",
    "aioboto3",
    "oras",
    "kubernetes",
)
OURS = (
    "modelops_runtime",
    "modelops_bundle",
    "modelops_registrar",
    "modelops_bundler",
    "modelops_submitter",
    "modelops_runner",
    "modelops_cli",
)

_PROBE = """
import json, sys
import modelops_contracts
from modelops_contracts import schema  # the CLI module too
print(json.dumps(sorted(sys.modules)))
"""


def test_import_pulls_in_no_heavy_or_sibling_packages() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], check=True, capture_output=True, text=True, timeout=60
    )
    loaded = set(json.loads(out.stdout))
    assert "msgspec" in loaded  # the probe saw a real import
    tops = {name.split(".")[0] for name in loaded}
    assert not tops & set(FORBIDDEN), (
        f"importing modelops_contracts loads {sorted(tops & set(FORBIDDEN))}"
    )
    assert not tops & set(OURS), f"modelops_contracts imports {sorted(tops & set(OURS))}"


def test_declared_dependencies_are_msgspec_only() -> None:
    from importlib.metadata import requires

    required = [r for r in requires("modelops-contracts") or [] if "extra ==" not in r]
    assert [r.split(">")[0].split("=")[0].strip() for r in required] == ["msgspec"]


def test_every_module_declares_all_and_exports_exist() -> None:
    for info in pkgutil.iter_modules(modelops_contracts.__path__):
        if info.name == "sampling":
            continue  # needs the optional numpy/scipy extra; its own tests cover it
        module = importlib.import_module(f"modelops_contracts.{info.name}")
        assert hasattr(module, "__all__"), f"modelops_contracts.{info.name} has no __all__"
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        assert not missing, f"modelops_contracts.{info.name}.__all__ names missing {missing}"
    assert all(hasattr(modelops_contracts, name) for name in modelops_contracts.__all__)
