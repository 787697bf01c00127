"""The worker's task handling in-process: every way a task ends becomes one reply."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from modelops_runner.model_contract import ModelCache
from modelops_runner.tables import encode_output
from modelops_runner.worker import run_task


def _task(entrypoint: str, params: dict | None = None, **extra: object) -> dict:
    return {
        "op": "task",
        "id": "t1",
        "entrypoint": entrypoint,
        "params": params or {},
        "seed": 7,
        **extra,
    }


def test_success_reply_carries_raw_outputs_and_metrics(models_path: Path) -> None:
    reply = run_task(ModelCache(), _task("sir_model:StochasticSIR", config={"days": 12}))
    assert reply["op"] == "result" and reply["id"] == "t1"
    assert sorted(reply["outputs"]) == ["incidence", "summary"]
    raw = reply["outputs"]["incidence"]
    assert isinstance(raw, dict) and raw["rows"] == 12  # numpy columns travel raw
    parquet = encode_output("incidence", raw, compression="snappy")
    incidence = pq.read_table(io.BytesIO(parquet))
    assert incidence.column("day").to_pylist() == list(range(12))
    assert reply["wall_s"] > 0 and reply["cpu_s"] >= 0 and reply["peak_rss"] > 10 * 1024 * 1024


@pytest.mark.parametrize(
    ("entrypoint", "kind", "error_type", "message"),
    [
        (
            "raising_model:Raises",
            "model_error",
            "ValueError",
            "ValueError: beta must be positive, got -1",
        ),
        (
            "bad_output_model:ReturnsRagged",
            "bad_output",
            "OutputTableError",
            "columns of different lengths",
        ),
        ("bad_output_model:ReturnsObject", "bad_output", "OutputTableError", "not a table"),
        ("bad_output_model:ReturnsList", "bad_output", "BadOutput", "returned list"),
        ("sir_model:StochasticSIR/nope", "model_error", "UnknownScenario", "no scenario 'nope'"),
        ("no_such_module_xyz:Model", "import_error", "ModuleNotFoundError", "No module named"),
    ],
)
def test_failures_have_the_right_kind(
    models_path: Path, entrypoint: str, kind: str, error_type: str, message: str
) -> None:
    reply = run_task(ModelCache(), _task(entrypoint, {"beta": -1}))
    assert (reply["op"], reply["kind"], reply["error_type"]) == ("failure", kind, error_type)
    assert message in reply["message"]
    assert reply["retire"] is False


def test_model_error_traceback_points_into_the_model(models_path: Path) -> None:
    reply = run_task(ModelCache(), _task("raising_model:Raises", {"beta": -1}))
    assert "raising_model.py" in reply["traceback"]
    assert reply["traceback"].rstrip().endswith("ValueError: beta must be positive, got -1")


def test_memory_error_is_oom_and_retires_the_worker(
    write_module: Callable[[str, str], Path],
) -> None:
    write_module(
        "m_memerr",
        "class Model:\n    def simulate(self, p, s):\n        raise MemoryError('16 GiB array')\n",
    )
    reply = run_task(ModelCache(), _task("m_memerr:Model"))
    assert (reply["kind"], reply["error_type"], reply["retire"]) == ("oom", "MemoryError", True)
    assert "16 GiB array" in reply["message"]


def test_sys_exit_in_a_model_is_a_model_error_not_a_dead_worker(
    write_module: Callable[[str, str], Path],
) -> None:
    write_module(
        "m_exit", "import sys\nclass Model:\n    def simulate(self, p, s):\n        sys.exit(4)\n"
    )
    reply = run_task(ModelCache(), _task("m_exit:Model"))
    assert (reply["kind"], reply["error_type"]) == ("model_error", "SystemExit")
