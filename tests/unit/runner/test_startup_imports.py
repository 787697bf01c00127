"""The runner's own process starts lean: every job launches one, and its imports are latency.

pyarrow and oras/requests (only a registry pull needs them) cost ~0.25 s together; a fresh
interpreter proves bootstrap does not import them at module level. pyarrow is loaded in a
thread while the workers start (tables.warm_up), and whatever it loads lazily on first use
must be loaded then too, not while the first tasks run. pandas, which pyarrow's first
conversion imports merely to check its input, is hidden from the runner's process.
"""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("pyarrow", "oras", "requests", "jsonschema")


def _fresh_interpreter(code: str) -> str:
    """What `code` prints in a new Python process (so nothing is imported yet)."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


def test_bootstrap_imports_neither_pyarrow_nor_the_registry_client() -> None:
    imported = _fresh_interpreter(
        "import sys, modelops_runner.__main__, modelops_runner.bootstrap; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    assert imported == "", f"imported at start-up: {imported}"


def test_after_the_warm_up_storing_a_task_output_imports_nothing_more() -> None:
    imported = _fresh_interpreter(
        "import sys, numpy as np; from modelops_runner import tables, wire; tables.warm_up(); "
        "before = set(sys.modules); "
        "out = {'day': np.arange(5), 'I': np.ones(5), 'ok': np.ones(5, bool), 'g': ['a'] * 5}; "
        "tables.encode_output('ts', wire.to_raw('ts', out), compression='snappy'); "
        "tables.encode_output('one', wire.to_raw('one', {'peak': 3, 'rate': 0.5}), "
        "compression='snappy'); "
        "print(','.join(sorted(set(sys.modules) - before)))"
    )
    assert imported == "", f"imported by the first store: {imported}"


def test_the_runner_process_stores_outputs_without_loading_pandas() -> None:
    printed = _fresh_interpreter(
        "import sys, numpy as np; from modelops_runner.__main__ import hide_pandas; "
        "hide_pandas(); from modelops_runner import tables, wire; tables.warm_up(); "
        "out = {'day': np.arange(3), 'x': [0.5, None, 2.0], 'g': ['a', 'b', 'c']}; "
        "data = tables.encode_output('ts', wire.to_raw('ts', out), compression='snappy'); "
        "print('pandas' in sys.modules, len(data) > 0)"
    )
    assert printed.split() == ["False", "True"], printed


def test_the_registry_store_still_loads_on_demand() -> None:
    from modelops_bundle.stores import LayoutStore, RegistryStore

    assert RegistryStore.__name__ == "RegistryStore" and LayoutStore.__name__ == "LayoutStore"
