"""What a model file declares and which project files it needs, read from its AST.

The model file is never imported: importing runs the modeler's code (slow, side effects, maybe
missing dependencies on this machine). Instead we parse it and its local imports:

- the entrypoint class must be bound at module level (defined there, or re-exported from a
  local module with `from .impl import Model`); otherwise ModelNotFound lists what is there;
- `outputs` (list/tuple of strings), `scenarios` (dict keys) and `parameters` (list of names or
  dict keys) are read when they are literals, also through a module-level constant or a base
  class defined in the project; anything else gives a warning and is not recorded;
- local imports are followed recursively (`import x`, `from x import y`, relative imports) and
  every project file they reach is returned, with the package `__init__.py` files Python runs
  on the way. Modules are looked up under the import root (the model file's folder minus the
  module's package path: `src/pkg/model.py` as `pkg.model` gives `src/`), which is what the
  runner puts on sys.path. Anything not found there is stdlib or third-party and is left out.
  Imports built at run time (`importlib.import_module(name)`) cannot be seen: add such files
  with `--code`.
"""

from __future__ import annotations

import ast
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import structlog

from modelops_contracts import Entrypoint, parse_entrypoint

from .errors import ModelNotFound, ProjectError
from .project import real_path_in_root

__all__ = [
    "ClassInfo",
    "ModelScan",
    "import_root",
    "imported_modules",
    "parse_source",
    "read_class",
    "scan_model",
]

log = structlog.get_logger(__name__)

_ATTRS = ("outputs", "scenarios", "parameters")
_MAX_HOPS = 8  # re-exports and base classes followed across modules, to stop cycles


@dataclass(frozen=True)
class ClassInfo:
    """Declared attributes of one class (None: not declared) and warnings about them."""

    name: str
    outputs: tuple[str, ...] | None = None
    scenarios: tuple[str, ...] | None = None
    parameters: tuple[str, ...] | None = None
    warnings: tuple[str, ...] = ()
    # `parameters = {"beta": {"lower": 0.1, "upper": 0.5}, ...}`: the declared ranges, if literal
    parameter_ranges: dict[str, dict[str, Any]] | None = None


@dataclass(frozen=True)
class ModelScan:
    """Result of scanning a model: declarations, project code files needed, external imports."""

    module: str
    cls: str
    import_root: str
    outputs: tuple[str, ...] = ()
    scenarios: tuple[str, ...] = ()
    parameters: tuple[str, ...] = ()
    parameter_ranges: dict[str, dict[str, Any]] | None = None
    code: tuple[str, ...] = ()
    external: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


# ---------------------------------------------------------------- pure AST reading


def import_root(path: str, module: str) -> str:
    """Project-relative folder from which `module` imports as file `path` ("" = project root).

    ProjectError if the file cannot be that module, because the runner would fail to import it.
    """
    p = PurePosixPath(path)
    if p.suffix != ".py":
        raise ProjectError(
            f"model file {path!r} is not a .py file", hint="point --path at the module file"
        )
    stem = p.parent if p.name == "__init__.py" else p.with_suffix("")
    parts = module.split(".")
    if len(stem.parts) < len(parts) or list(stem.parts[len(stem.parts) - len(parts) :]) != parts:
        suggestion = p.parent.name if p.name == "__init__.py" else p.stem
        raise ProjectError(
            f"entrypoint module {module!r} cannot be imported from file {path!r}",
            hint=f"name the module after the file, e.g. '{suggestion}:<Class>', or fix --path",
        )
    prefix = stem.parts[: len(stem.parts) - len(parts)]
    return PurePosixPath(*prefix).as_posix() if prefix else ""


def parse_source(data: bytes, *, source: str) -> ast.Module:
    """Parse Python source (honours its encoding cookie); ProjectError naming file and line."""
    try:
        return ast.parse(data, filename=source)
    except SyntaxError as exc:
        raise ProjectError(
            f"{source}:{exc.lineno}: cannot parse: {exc.msg}", hint="fix the syntax error"
        ) from exc
    except ValueError as exc:  # e.g. NUL bytes
        raise ProjectError(f"{source} is not Python source: {exc}") from exc


def _top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """Module-level statements, looking inside if/try/with blocks but not functions/classes."""
    out: list[ast.stmt] = []
    for node in body:
        out.append(node)
        if isinstance(node, ast.If | ast.With):
            out += _top_level(node.body) + _top_level(getattr(node, "orelse", []))
        elif isinstance(node, ast.Try):
            out += _top_level(node.body) + _top_level(node.orelse) + _top_level(node.finalbody)
            for handler in node.handlers:
                out += _top_level(handler.body)
    return out


def _bindings(tree: ast.Module) -> dict[str, ast.AST]:
    """Module-level names bound by class definitions, imports and assignments (last wins)."""
    names: dict[str, ast.AST] = {}
    for node in _top_level(tree.body):
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names[node.name] = node
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                names[alias.asname or alias.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names[target.id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
            names[node.target.id] = node.value
    return names


def _strings(node: ast.AST) -> tuple[str, ...] | None:
    if isinstance(node, ast.List | ast.Tuple) and all(
        isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts
    ):
        return tuple(e.value for e in node.elts)  # type: ignore[attr-defined]
    return None


def _keys(node: ast.AST) -> tuple[str, ...] | None:
    if isinstance(node, ast.Dict) and all(
        isinstance(k, ast.Constant) and isinstance(k.value, str) for k in node.keys
    ):
        return tuple(k.value for k in node.keys)  # type: ignore[union-attr]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "dict"
        and not node.args
        and all(kw.arg for kw in node.keywords)
    ):
        return tuple(kw.arg for kw in node.keywords)  # type: ignore[misc]
    return None


def _read_attr(name: str, node: ast.AST) -> tuple[str, ...] | None:
    if name == "outputs":
        return _strings(node)
    if name == "scenarios":
        return _keys(node)
    return _strings(node) or _keys(node)  # parameters: names, or a dict keyed by name


def read_class(tree: ast.Module, cls: str, *, source: str) -> ClassInfo:
    """Declared outputs/scenarios/parameters of class `cls` in `tree` (not of its bases).

    ModelNotFound, listing the module's classes, if nothing named `cls` is bound at module
    level. A name bound some other way (an assignment, an import from a library) is accepted
    with a warning, since the runner can still import it, but its declarations are not read.
    """
    names = _bindings(tree)
    node = names.get(cls)
    if node is None:
        classes = sorted(n for n, v in names.items() if isinstance(v, ast.ClassDef))
        found = ", ".join(classes) if classes else "none"
        raise ModelNotFound(
            f"class {cls!r} is not defined in {source} (classes found: {found})",
            hint="check the entrypoint's class name (it is case-sensitive)",
        )
    if not isinstance(node, ast.ClassDef):
        line = getattr(node, "lineno", "?")
        return ClassInfo(
            name=cls,
            warnings=(
                f"{source}:{line}: {cls} is not a class defined here; its declarations not read",
            ),
        )
    values: dict[str, tuple[str, ...] | None] = {}
    warnings: list[str] = []
    ranges: dict[str, dict[str, Any]] | None = None
    for stmt in node.body:
        target, value = None, None
        if (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
        ):
            target, value = stmt.targets[0].id, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value:
            target, value = stmt.target.id, stmt.value
        elif isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef) and stmt.name in _ATTRS:
            warnings.append(f"{source}:{stmt.lineno}: {cls}.{stmt.name} is computed, not recorded")
            values[stmt.name] = ()
            continue
        if target not in _ATTRS or value is None:
            continue
        if isinstance(value, ast.Name) and isinstance(names.get(value.id), ast.expr):
            value = names[value.id]  # a module-level constant
        parsed = _read_attr(target, value)
        if parsed is None:
            warnings.append(
                f"{source}:{stmt.lineno}: {cls}.{target} is not a literal "
                f"({'list of strings' if target == 'outputs' else 'dict or list of names'}), "
                "not recorded"
            )
            parsed = ()
        values[target] = parsed
        if target == "parameters" and isinstance(value, ast.Dict):
            ranges = _literal_ranges(value)
    return ClassInfo(name=cls, warnings=tuple(warnings), parameter_ranges=ranges, **values)


def _literal_ranges(node: ast.Dict) -> dict[str, dict[str, Any]] | None:
    """`{"beta": {"lower": 0.1, "upper": 0.5}, ...}` as data, or None if not that literal shape."""
    try:
        value = ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return None
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        return value
    return None


def _package_of(module: str, is_package: bool) -> list[str]:
    return module.split(".") if is_package else module.split(".")[:-1]


def imported_modules(
    tree: ast.AST, *, module: str, is_package: bool
) -> list[tuple[str, tuple[str, ...]]]:
    """Absolute names of every module `tree` imports, anywhere in the file, with the names
    imported from it (`from m import a, b` gives ("m", ("a", "b"))). Relative imports are
    resolved against `module`; one reaching above the top-level package is left out."""
    out: list[tuple[str, tuple[str, ...]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = tuple(a.name for a in node.names if a.name != "*")
            if node.level == 0:
                out.append((node.module or "", names))
                continue
            package = _package_of(module, is_package)
            if node.level - 1 > len(package) or (
                node.level - 1 == len(package) and not node.module
            ):
                continue
            base = package[: len(package) - (node.level - 1)]
            target = ".".join([*base, *([node.module] if node.module else [])])
            out.append((target, names))
    return [(m, n) for m, n in out if m]


# ---------------------------------------------------------------- following files on disk


@dataclass
class _Walker:
    """Resolves module names to project files under one import root and walks imports."""

    root: Path
    import_root: str
    found: dict[str, tuple[str, bool]] = field(default_factory=dict)  # rel path -> (module, is_pkg)
    external: set[str] = field(default_factory=set)
    _trees: dict[str, ast.Module] = field(default_factory=dict)

    def _rel(self, *parts: str) -> str:
        return PurePosixPath(self.import_root, *parts).as_posix()

    def resolve(self, module: str) -> list[tuple[str, str, bool]]:
        """Project files Python runs to import `module`: [(rel path, module, is_package)],
        in the order of the import system (a package's __init__.py beats a same-named .py)."""
        files: list[tuple[str, str, bool]] = []
        parts = module.split(".")
        for i in range(1, len(parts) + 1):
            name, sub = ".".join(parts[:i]), parts[:i]
            init, plain = self._rel(*sub, "__init__.py"), self._rel(*sub[:-1], sub[-1] + ".py")
            if (self.root / init).is_file():
                files.append((init, name, True))
            elif (self.root / plain).is_file():
                files.append((plain, name, False))
                break  # a plain module has no submodules
            elif not (self.root / self._rel(*sub)).is_dir():  # not a namespace package either
                if i == 1 and parts[0] not in sys.stdlib_module_names and parts[0] != "__future__":
                    self.external.add(parts[0])
                break
        return files

    def module_file(self, module: str) -> tuple[str, bool] | None:
        """(rel path, is_package) of `module` itself, if it is a project file."""
        files = self.resolve(module)
        return (files[-1][0], files[-1][2]) if files and files[-1][1] == module else None

    def parse(self, rel: str) -> ast.Module:
        if rel not in self._trees:
            real_path_in_root(self.root, rel, what=f"module file {rel!r}")
            self._trees[rel] = parse_source((self.root / rel).read_bytes(), source=rel)
        return self._trees[rel]

    def follow(self, rel: str, module: str, is_package: bool) -> None:
        """Add `rel` and, transitively, every project module it imports."""
        queue = deque([(rel, module, is_package)])
        while queue:
            item = queue.popleft()
            if item[0] in self.found:
                continue
            self.found[item[0]] = (item[1], item[2])
            tree = self.parse(item[0])
            for target, names in imported_modules(tree, module=item[1], is_package=item[2]):
                queue.extend(self.resolve(target))
                for name in names:  # `from pkg import sub` may import submodule pkg.sub
                    sub = f"{target}.{name}"
                    queue.extend(f for f in self.resolve(sub) if f[1] == sub)


def _origin(walker: _Walker, module: str, is_package: bool, name: str) -> tuple[str, str] | None:
    """(module, name) that a local re-export of `name` points to: `from x import name [as n]`,
    or `from x import *` where x defines it; None if `name` is defined here or x is a library."""
    tree = walker.parse(walker.module_file(module)[0])  # type: ignore[index]
    node = _bindings(tree).get(name)
    if isinstance(node, ast.ImportFrom):
        original = next(a.name for a in node.names if (a.asname or a.name) == name)
        targets = imported_modules(node, module=module, is_package=is_package)
        if targets and walker.module_file(targets[0][0]):
            return targets[0][0], original
        return None
    if node is not None:
        return None
    for stmt in _top_level(tree.body):
        if isinstance(stmt, ast.ImportFrom) and any(a.name == "*" for a in stmt.names):
            targets = imported_modules(stmt, module=module, is_package=is_package)
            located = walker.module_file(targets[0][0]) if targets else None
            if located and name in _bindings(walker.parse(located[0])):
                return targets[0][0], name
    return None


def _class_info(
    walker: _Walker, module: str, cls: str, seen: frozenset[tuple[str, str]] = frozenset()
) -> ClassInfo:
    """Declarations of `cls` as importable from `module`, following local re-exports, and
    filling undeclared attributes from base classes found in the project."""
    located = walker.module_file(module)
    if located is None:
        raise ModelNotFound(
            f"module {module!r} not found under {walker.import_root or '.'}/",
            hint="check the entrypoint's module name",
        )
    seen = seen | {(module, cls)}
    origin = _origin(walker, module, located[1], cls)
    if origin and origin not in seen and len(seen) < _MAX_HOPS:
        return _class_info(walker, *origin, seen=seen)
    tree = walker.parse(located[0])
    info = read_class(tree, cls, source=located[0])
    node = _bindings(tree)[cls]
    values = {a: getattr(info, a) for a in _ATTRS}
    warnings = list(info.warnings)
    for base in getattr(node, "bases", []):
        if not isinstance(base, ast.Name) or all(v is not None for v in values.values()):
            continue
        where = (
            (module, base.id) if isinstance(_bindings(tree).get(base.id), ast.ClassDef) else None
        )
        where = where or _origin(walker, module, located[1], base.id)
        if where is None or where in seen or len(seen) >= _MAX_HOPS:
            continue  # a library base class (or a cycle): nothing to read
        base_info = _class_info(walker, *where, seen=seen)
        warnings += base_info.warnings
        for a in _ATTRS:
            if values[a] is None:
                values[a] = getattr(base_info, a)
    return ClassInfo(
        name=cls,
        warnings=tuple(dict.fromkeys(warnings)),
        parameter_ranges=info.parameter_ranges,
        **values,
    )


def scan_model(root: Path, path: str, entrypoint: str | Entrypoint) -> ModelScan:
    """Scan model file `path` (project-relative) for the entrypoint's class and its code files.

    Raises ModelNotFound (no such file or class), ProjectError (file/module mismatch, syntax
    error) and UnsafePath (a local import resolving outside the project through a symlink).
    """
    ep = parse_entrypoint(entrypoint) if isinstance(entrypoint, str) else entrypoint
    if not (root / path).is_file():
        raise ModelNotFound(f"model file {path!r} does not exist", hint="check --path")
    walker = _Walker(root=root, import_root=import_root(path, ep.module))
    located = walker.module_file(ep.module)
    if located is None or located[0] != path:
        shadow = f"{located[0]!r}" if located else "another file"
        raise ProjectError(
            f"module {ep.module!r} would be imported from {shadow}, not from {path!r}",
            hint="rename or remove what shadows the model module, or fix --path",
        )
    info = _class_info(walker, ep.module, ep.cls)
    for rel, module, is_package in walker.resolve(ep.module):
        walker.follow(rel, module, is_package)
    scan = ModelScan(
        module=ep.module,
        cls=ep.cls,
        import_root=walker.import_root,
        outputs=info.outputs or (),
        scenarios=info.scenarios or (),
        parameters=info.parameters or (),
        parameter_ranges=info.parameter_ranges,
        code=tuple(sorted(walker.found)),
        external=tuple(sorted(walker.external)),
        warnings=info.warnings,
    )
    log.debug(
        "model.scanned", path=path, entrypoint=str(ep), code=len(scan.code), external=scan.external
    )
    return scan
