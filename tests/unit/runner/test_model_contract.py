"""The model contract applied in-process: loading, scenarios, config, outputs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from modelops_runner.model_contract import ModelCache, ModelTaskError, load_model, run_model


def test_scenario_patch_wins_over_params_and_config_merges_over_class_defaults(
    models_path: Path,
) -> None:
    model, scenario = ModelCache().get("sir_model:StochasticSIR/lockdown")
    assert scenario == "lockdown"
    tables = run_model(model, scenario=scenario, params={"beta": 0.9}, seed=1, config={"days": 30})
    assert tables["summary"]["beta"] == 0.1
    assert tables["summary"]["days"] == 30
    assert model.instance.config == {"days": 30, "population": 10_000}
    # the next task without config gets the class defaults back, not the last task's
    tables = run_model(model, scenario=None, params={"beta": 0.9}, seed=1)
    assert tables["summary"] == {**tables["summary"], "beta": 0.9, "days": 160}


def test_same_seed_same_tables_and_the_instance_is_built_once(models_path: Path) -> None:
    cache = ModelCache()
    model, _ = cache.get("sir_model:StochasticSIR")
    again, _ = cache.get("sir_model:StochasticSIR/baseline")
    assert again is model
    a = run_model(model, scenario=None, params={}, seed=42)
    b = run_model(model, scenario=None, params={}, seed=42)
    assert (a["incidence"]["infected"] == b["incidence"]["infected"]).all()


def test_unknown_scenario_is_a_model_error_naming_the_known_ones(models_path: Path) -> None:
    model, scenario = ModelCache().get("sir_model:StochasticSIR/lockdwn")
    with pytest.raises(
        ModelTaskError, match=r"no scenario 'lockdwn'; known scenarios: \['baseline', 'lockdown'\]"
    ) as info:
        run_model(model, scenario=scenario, params={}, seed=1)
    assert info.value.kind == "model_error"


def test_requested_outputs_filter_and_a_missing_one_is_bad_output(models_path: Path) -> None:
    model, _ = ModelCache().get("sir_model:StochasticSIR")
    assert list(run_model(model, scenario=None, params={}, seed=1, outputs=["summary"])) == [
        "summary"
    ]
    with pytest.raises(
        ModelTaskError, match=r"did not return requested output\(s\) \['prevalence'\]"
    ) as info:
        run_model(model, scenario=None, params={}, seed=1, outputs=["summary", "prevalence"])
    assert info.value.kind == "bad_output"


def test_a_non_dict_result_is_bad_output(models_path: Path) -> None:
    model = load_model("bad_output_model:ReturnsList")
    with pytest.raises(ModelTaskError, match="returned list; it must return a dict") as info:
        run_model(model, scenario=None, params={}, seed=1)
    assert info.value.kind == "bad_output"


def test_model_exceptions_propagate_unchanged(models_path: Path) -> None:
    model = load_model("raising_model:Raises")
    with pytest.raises(ValueError, match="beta must be positive"):
        run_model(model, scenario=None, params={"beta": -1}, seed=1)


@pytest.mark.parametrize(
    ("source", "entrypoint", "message", "error_type"),
    [
        (
            "x = (\n",
            "m_syntax:Model",
            "importing module 'm_syntax' failed: SyntaxError",
            "SyntaxError",
        ),
        (
            "raise RuntimeError('no data file')\n",
            "m_raises:Model",
            "RuntimeError: no data file",
            "RuntimeError",
        ),
        (
            "class Other:\n    pass\n",
            "m_noclass:Model",
            r"has no 'Model'; its classes are \['Other'\]",
            "AttributeError",
        ),
        ("Model = 3\n", "m_notclass:Model", "is a int, not a class", "TypeError"),
        ("class Model:\n    pass\n", "m_nosim:Model", "has no simulate", "TypeError"),
        (
            "class Model:\n    scenarios = [1]\n    def simulate(self, p, s):\n        return {}\n",
            "m_badscen:Model",
            "scenarios must be a dict",
            "TypeError",
        ),
        (
            "class Model:\n    def __init__(self):\n        raise OSError('missing weights.bin')\n"
            "    def simulate(self, p, s):\n        return {}\n",
            "m_init:Model",
            r"Model\(\) failed: OSError: missing weights.bin",
            "OSError",
        ),
    ],
)
def test_load_failures_are_import_errors_with_a_cause(
    write_module: Callable[[str, str], Path],
    source: str,
    entrypoint: str,
    message: str,
    error_type: str,
) -> None:
    write_module(entrypoint.split(":")[0], source)
    with pytest.raises(ModelTaskError, match=message) as info:
        load_model(entrypoint)
    assert info.value.kind == "import_error"
    assert info.value.error_type == error_type
    assert entrypoint in info.value.message


def test_missing_module_and_bad_entrypoint_are_import_errors() -> None:
    cache = ModelCache()
    with pytest.raises(ModelTaskError, match="No module named 'no_such_model_module'") as info:
        cache.get("no_such_model_module:Model")
    assert info.value.kind == "import_error"
    assert "Traceback" in info.value.traceback_text
    with pytest.raises(ModelTaskError, match="has no ':Class' part") as info:
        cache.get("just_a_module")
    assert info.value.kind == "import_error"


def test_a_failed_load_is_cached_not_retried(write_module: Callable[[str, str], Path]) -> None:
    path = write_module("m_flaky", "raise RuntimeError('first import fails')\n")
    cache = ModelCache()
    with pytest.raises(ModelTaskError, match="first import fails"):
        cache.get("m_flaky:Model")
    path.write_text("class Model:\n    def simulate(self, p, s):\n        return {}\n")
    with pytest.raises(ModelTaskError, match="first import fails"):
        cache.get("m_flaky:Model")


def test_import_paths_go_first_on_sys_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "m_pathcheck.py").write_text(
        "class Model:\n    def simulate(self, p, s):\n        return {}\n"
    )
    cache = ModelCache([str(tmp_path)])
    assert sys.path[0] == str(tmp_path)
    assert cache.get("m_pathcheck:Model")[0].target == "m_pathcheck:Model"
