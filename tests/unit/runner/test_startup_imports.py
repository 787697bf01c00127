"""The runner's own process starts lean: every job launches one, and its imports are latency.

pyarrow (only the workers write Parquet) and oras/requests (only a registry pull needs them)
cost ~0.25 s together; a fresh interpreter proves bootstrap does not import them.
"""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("pyarrow", "oras", "requests", "jsonschema")


def test_bootstrap_imports_neither_pyarrow_nor_the_registry_client() -> None:
    code = (
        "import sys, modelops_runner.__main__, modelops_runner.bootstrap; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "", f"imported at start-up: {done.stdout.strip()}"


def test_the_registry_store_still_loads_on_demand() -> None:
    from modelops_bundle.stores import LayoutStore, RegistryStore

    assert RegistryStore.__name__ == "RegistryStore" and LayoutStore.__name__ == "LayoutStore"
