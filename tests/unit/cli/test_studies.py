"""Study files: --param flags, method defaults, saving, loading and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelops_cli.errors import ConfigError, StudyFileError
from modelops_cli.studies import (
    check_declared,
    load_study,
    parse_param,
    pick_method,
    registered_model,
    save_study,
    space_from_params,
)
from modelops_contracts import (
    ModelEntry,
    ParameterSet,
    ParameterSpace,
    ParameterSpec,
    SimulationStudy,
)

DIGEST = "sha256:" + "1" * 64


def test_parse_param_flags() -> None:
    spec = parse_param("I0=1:50:int")
    assert (spec.name, spec.lower, spec.upper, spec.kind, spec.log) == (
        "I0",
        1.0,
        50.0,
        "int",
        False,
    )
    assert parse_param("d=0.001:1:log").log
    space = space_from_params(["beta=0.02:0.08", "gamma=0.05:0.2"])
    assert space.names == ["beta", "gamma"]


@pytest.mark.parametrize(
    "bad", ["beta", "beta=0.1", "beta=a:b", "beta=0.5:0.1", "1x=0:1", "b=0:1:cube"]
)
def test_bad_param_flags_are_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        space_from_params([bad])
    assert "--param" in info.value.message


def test_repeated_param_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="repeat"):
        space_from_params(["a=0:1", "a=0:2"])


def test_pick_method() -> None:
    assert pick_method(None, table=Path("t.csv"), levels=None) == "explicit"
    assert pick_method(None, table=None, levels=3) == "grid"
    assert pick_method(None, table=None, levels=None) == "lhs"
    assert pick_method("sobol", table=None, levels=None) == "sobol"


def _study(**kw: object) -> SimulationStudy:
    sets = [ParameterSet(params={"beta": b}) for b in (0.02, 0.05)]
    return SimulationStudy(model="model:StochasticSIR", parameter_sets=sets, n_replicates=3, **kw)  # type: ignore[arg-type]


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    study = _study(base_seed=9)
    path = tmp_path / "sub" / "study.json"
    save_study(study, path)
    assert load_study(path) == study
    assert path.read_text().startswith("{\n")  # indented: reviewable in a diff


def test_load_errors_name_the_file_and_field(tmp_path: Path) -> None:
    with pytest.raises(StudyFileError, match="does not exist") as missing:
        load_study(tmp_path / "nope.json")
    assert "study create" in (missing.value.hint or "")
    bad = tmp_path / "bad.json"
    bad.write_text('{"model": "model:X", "parameter_sets": []}')
    with pytest.raises(StudyFileError, match="parameter_sets"):
        load_study(bad)
    bad.write_text("not json")
    with pytest.raises(StudyFileError, match="not a valid study"):
        load_study(bad)


def _entry(space: ParameterSpace | None) -> ModelEntry:
    from modelops_contracts import TrackedFile

    return ModelEntry(
        id="M",
        entrypoint="model:StochasticSIR",
        path="src/model.py",
        code=[TrackedFile(path="src/model.py", digest=DIGEST, size=1)],
        parameter_space=space,
    )


def test_check_declared_refuses_sets_outside_the_model_ranges() -> None:
    narrow = ParameterSpace(specs=[ParameterSpec(name="beta", lower=0.0, upper=0.03)])
    check_declared(_study(), None)
    check_declared(_study(), _entry(None))
    with pytest.raises(ConfigError, match="parameter set #1"):
        check_declared(_study(), _entry(narrow))


def test_registered_model_needs_a_choice_when_unclear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no model is registered"):
        registered_model(tmp_path, None)
    assert registered_model(tmp_path, "model:Elsewhere") is None
