"""A model's literal `parameters = {name: {lower, upper, ...}}` becomes its declared space."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelops_bundle.errors import ProjectError
from modelops_bundle.registration import register_model

MODEL = """
class SIR:
    parameters = {
        "beta": {"lower": 0.05, "upper": 1.0},
        "I0": {"lower": 1, "upper": 50, "kind": "int"},
    }
    def simulate(self, params, seed):
        return {}
"""


def _project(tmp_path: Path, source: str) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "model.py").write_text(source)
    return tmp_path


def test_declared_ranges_are_recorded_as_a_parameter_space(tmp_path: Path) -> None:
    root = _project(tmp_path, MODEL)
    reg = register_model(root, "model:SIR", "src/model.py", base=root)
    space = reg.entry.parameter_space
    assert space is not None
    assert space.names == ["beta", "I0"]
    assert space.spec("I0").kind == "int" and space.spec("beta").upper == 1.0
    assert sorted(reg.entry.parameters) == ["I0", "beta"]


def test_names_only_declaration_has_no_space(tmp_path: Path) -> None:
    root = _project(
        tmp_path,
        MODEL.replace('"beta": {"lower": 0.05, "upper": 1.0},', "")
        .replace('"I0": {"lower": 1, "upper": 50, "kind": "int"},', "")
        .replace("parameters = {\n        \n        \n    }", 'parameters = ["beta"]'),
    )
    reg = register_model(root, "model:SIR", "src/model.py", base=root)
    assert reg.entry.parameter_space is None


def test_invalid_declared_range_is_a_clear_error(tmp_path: Path) -> None:
    root = _project(tmp_path, MODEL.replace('"upper": 1.0', '"upper": 0.01'))
    with pytest.raises(ProjectError, match="declared parameters"):
        register_model(root, "model:SIR", "src/model.py", base=root)
