"""model_scan reads the model's AST (never imports it) and follows its local imports."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from modelops_bundle.errors import ModelNotFound, ProjectError, UnsafePath
from modelops_bundle.model_scan import import_root, imported_modules, scan_model

from .example_project import imported_from, make_project


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_example_model_is_scanned_without_being_imported(tmp_path: Path) -> None:
    make_project(tmp_path)
    scan = scan_model(tmp_path, "src/model.py", "model:StochasticSIR")
    assert imported_from(tmp_path) == []
    assert scan.import_root == "src"
    assert scan.code == ("src/model.py", "src/sir_utils.py")  # not src/unused.py
    assert scan.outputs == ("incidence", "prevalence")  # through the OUTPUTS constant
    assert scan.scenarios == ("baseline", "lockdown")
    assert scan.parameters == ("beta", "gamma")
    assert scan.external == ("numpy",)  # math is stdlib: not listed
    assert scan.warnings == ()


def test_missing_class_lists_the_classes_found(tmp_path: Path) -> None:
    _write(tmp_path, {"model.py": "class SIR: pass\nclass SEIR: pass\ndef f(): pass\n"})
    with pytest.raises(
        ModelNotFound,
        match=r"'StochasticSIR' is not defined in model.py \(classes found: SEIR, SIR\)",
    ):
        scan_model(tmp_path, "model.py", "model:StochasticSIR")


def test_missing_file_and_syntax_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="does not exist"):
        scan_model(tmp_path, "model.py", "model:M")
    _write(tmp_path, {"model.py": "import helper\nclass M: pass\n", "helper.py": "x = 1\ndef (:\n"})
    with pytest.raises(ProjectError, match=r"helper.py:2: cannot parse"):
        scan_model(tmp_path, "model.py", "model:M")


@pytest.mark.parametrize(
    ("path", "module", "root"),
    [
        ("src/model.py", "model", "src"),
        ("src/pkg/model.py", "pkg.model", "src"),
        ("model.py", "model", ""),
        ("a/b/pkg/__init__.py", "pkg", "a/b"),
        ("pkg/sub/m.py", "pkg.sub.m", ""),
    ],
)
def test_import_root(path: str, module: str, root: str) -> None:
    assert import_root(path, module) == root


@pytest.mark.parametrize(
    ("path", "module"), [("src/sir.py", "model"), ("src/model.py", "pkg.model"), ("src/m.txt", "m")]
)
def test_import_root_refuses_a_file_that_is_not_the_module(path: str, module: str) -> None:
    with pytest.raises(ProjectError):
        import_root(path, module)


def test_package_imports_are_followed_recursively(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "src/pkg/__init__.py": "from .version import V\n",
            "src/pkg/version.py": "V = 1\n",
            "src/pkg/model.py": (
                "from . import helpers\n"
                "from .sub import thing\n"
                "from .sub.deep import fn\n"
                "import json, scipy.stats\n"
                "def lazy():\n"
                "    from pkg import lazy_mod\n"
                "class Model:\n"
                "    outputs: tuple[str, ...] = ('a',)\n"
                "    scenarios = dict(base={}, high={'x': 1})\n"
            ),
            "src/pkg/helpers.py": "from .util2 import x\nfrom ... import nothing\n",
            "src/pkg/util2.py": "x = 2\n",
            "src/pkg/sub/__init__.py": "",
            "src/pkg/sub/thing.py": "",
            "src/pkg/sub/deep.py": "def fn(): pass\n",
            "src/pkg/lazy_mod.py": "",
            "src/pkg/unrelated.py": "",
            "src/other.py": "",
            "tests/test_x.py": "import pkg\n",
        },
    )
    scan = scan_model(tmp_path, "src/pkg/model.py", "pkg.model:Model")
    assert scan.code == tuple(
        f"src/pkg/{p}"
        for p in [
            "__init__.py",
            "helpers.py",
            "lazy_mod.py",
            "model.py",
            "sub/__init__.py",
            "sub/deep.py",
            "sub/thing.py",
            "util2.py",
            "version.py",
        ]
    )
    assert scan.external == ("scipy",)
    assert scan.outputs == ("a",) and scan.scenarios == ("base", "high")


def test_namespace_package_without_init(tmp_path: Path) -> None:
    _write(tmp_path, {"ns/model.py": "from ns import util\nclass M: pass\n", "ns/util.py": ""})
    assert scan_model(tmp_path, "ns/model.py", "ns.model:M").code == ("ns/model.py", "ns/util.py")


def test_class_re_exported_from_a_local_module(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "from .impl import Impl as Model\n",
            "pkg/impl.py": (
                "from .base import Base\nclass Impl(Base):\n    scenarios = {'s1': {}}\n"
            ),
            "pkg/base.py": (
                "class Base:\n    outputs = ['cases']\n    parameters = {'beta': (0, 1)}\n"
            ),
        },
    )
    scan = scan_model(tmp_path, "pkg/__init__.py", "pkg:Model")
    assert (scan.outputs, scan.scenarios, scan.parameters) == (("cases",), ("s1",), ("beta",))
    assert scan.code == ("pkg/__init__.py", "pkg/base.py", "pkg/impl.py")


def test_class_re_exported_with_a_star_import(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "from .other import *\nfrom .impl import *\n",
            "pkg/other.py": "class Unrelated: pass\n",
            "pkg/impl.py": "class Model:\n    outputs = ['cases']\n",
        },
    )
    assert scan_model(tmp_path, "pkg/__init__.py", "pkg:Model").outputs == ("cases",)


def test_library_base_class_and_non_literal_declarations(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "model.py": (
                "from somelib import Base\n"
                "class M(Base):\n"
                "    outputs = [name for name in 'ab']\n"
                "    @property\n"
                "    def scenarios(self):\n"
                "        return {}\n"
            )
        },
    )
    scan = scan_model(tmp_path, "model.py", "model:M")
    assert scan.outputs == () and scan.scenarios == ()
    assert any("M.outputs is not a literal" in w and "model.py:3" in w for w in scan.warnings)
    assert any("M.scenarios is computed" in w for w in scan.warnings)
    assert scan.external == ("somelib",)


def test_name_bound_otherwise_is_accepted_with_a_warning(tmp_path: Path) -> None:
    _write(tmp_path, {"model.py": "from factory import make\nM = make()\n"})
    scan = scan_model(tmp_path, "model.py", "model:M")
    assert scan.warnings and "not a class defined here" in scan.warnings[0]


def test_a_package_shadowing_the_model_file_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, {"src/model.py": "class M: pass\n", "src/model/__init__.py": ""})
    with pytest.raises(
        ProjectError, match=re.escape("would be imported from 'src/model/__init__.py'")
    ):
        scan_model(tmp_path, "src/model.py", "model:M")


def test_local_import_linked_outside_the_project_is_unsafe(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    _write(outside, {"evil.py": "x = 1\n"})
    proj = _write(tmp_path / "proj", {"model.py": "import evil\nclass M: pass\n"})
    (proj / "evil.py").symlink_to(outside / "evil.py")
    with pytest.raises(UnsafePath, match=re.escape("evil.py")):
        scan_model(proj, "model.py", "model:M")


def test_encoding_cookie_is_honoured(tmp_path: Path) -> None:
    (tmp_path / "model.py").write_bytes(
        "# -*- coding: latin-1 -*-\nclass M:\n    outputs = ['caf\xe9']\n".encode("latin-1")
    )
    assert scan_model(tmp_path, "model.py", "model:M").outputs == ("café",)


@pytest.mark.parametrize(
    ("source", "module", "is_package", "expected"),
    [
        ("import a.b, c", "m", False, [("a.b", ()), ("c", ())]),
        ("from . import x, y", "pkg.mod", False, [("pkg", ("x", "y"))]),
        ("from .sub import *", "pkg", True, [("pkg.sub", ())]),
        ("from ..up import z", "pkg.inner.mod", False, [("pkg.up", ("z",))]),
        ("from .. import z", "top", False, []),  # beyond the top-level package
        ("from . import z", "top", False, []),
    ],
)
def test_imported_modules(source: str, module: str, is_package: bool, expected: list) -> None:
    assert imported_modules(ast.parse(source), module=module, is_package=is_package) == expected
