"""deploy/docker/Dockerfile, checked statically (no Docker engine on this machine to build it).

Parsed into instructions and stages, then checked for what matters: the base image, every
package of the repository copied and installed, a non-root numeric user, tini as PID 1, and a
build context filter that lets the packages (and only them) in.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass

import pytest

from .repo import DEPLOY, REPO

DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
DOCKERIGNORE = DEPLOY / "docker" / "Dockerfile.dockerignore"


@dataclass(frozen=True)
class Instruction:
    op: str
    args: str


def parse(text: str) -> list[Instruction]:
    """Dockerfile instructions with line continuations joined and comments dropped."""
    out: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        op, _, args = full.partition(" ")
        out.append(Instruction(op.upper(), args.strip()))
    assert not pending, "dangling line continuation"
    return out


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for ins in instructions:
        if ins.op == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def packages() -> list[str]:
    """Every installable package of the monorepo: folders holding a pyproject.toml."""
    found = sorted(
        str(p.parent.relative_to(REPO))
        for pattern in (
            "shared/*/pyproject.toml",
            "services/*/pyproject.toml",
            "cli/pyproject.toml",
        )
        for p in REPO.glob(pattern)
    )
    assert len(found) >= 8
    return found


INSTRUCTIONS = parse(DOCKERFILE.read_text())
BUILD, RUNTIME = stages(INSTRUCTIONS)


def ops(stage: list[Instruction], op: str) -> list[str]:
    return [i.args for i in stage if i.op == op]


def test_parser_handles_continuations_and_comments():
    got = parse('# c\nFROM a AS b\nRUN x \\\n  # inner\n  && y\nCMD ["z"]\n')
    assert got == [
        Instruction("FROM", "a AS b"),
        Instruction("RUN", "x  && y"),
        Instruction("CMD", '["z"]'),
    ]


def test_both_stages_are_python_3_11_slim():
    assert INSTRUCTIONS[0] == Instruction("ARG", "PYTHON_IMAGE=python:3.11-slim")
    assert BUILD[0].args == "${PYTHON_IMAGE} AS build"
    assert RUNTIME[0].args == "${PYTHON_IMAGE}"


@pytest.mark.parametrize("package", packages())
def test_every_package_is_copied_and_installed(package: str):
    assert f"{package}/ {package}/" in ops(BUILD, "COPY")
    (install,) = [r for r in ops(BUILD, "RUN") if r.startswith("pip install")]
    words = shlex.split(install.split("&&")[0])
    assert any(w == f"./{package}" or w.startswith(f"./{package}[") for w in words), package
    # ...and the build proves it imports.
    module = next((REPO / package / "src").glob("modelops_*/__init__.py")).parent.name
    assert re.search(rf"\b{module}\b", install.split("&&")[1])


def test_contracts_are_installed_with_sampling_extras():
    (install,) = [r for r in ops(BUILD, "RUN") if r.startswith("pip install")]
    assert '"./shared/contracts[sampling]"' in install


def test_copy_sources_exist_and_nothing_is_fetched_from_urls():
    for stage in (BUILD, RUNTIME):
        for args in ops(stage, "COPY"):
            if args.startswith("--from="):
                continue
            source = args.split()[0]
            assert (REPO / source).exists(), source
    assert not [i for i in INSTRUCTIONS if i.op == "ADD"]


def test_runtime_runs_as_a_numeric_non_root_user_under_tini():
    assert ops(RUNTIME, "COPY") == ["--from=build /opt/modelops /opt/modelops"]
    assert not [r for r in ops(RUNTIME, "RUN") if "pip install" in r]
    (user,) = ops(RUNTIME, "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit() and int(gid) > 0
    order = [i.op for i in RUNTIME]
    assert order.index("USER") < order.index("ENTRYPOINT") < order.index("CMD")
    assert json.loads(ops(RUNTIME, "ENTRYPOINT")[0]) == ["/usr/bin/tini", "--"]
    assert any("tini" in r for r in ops(RUNTIME, "RUN"))
    assert ops(RUNTIME, "EXPOSE") == ["8080"]


def test_runtime_environment_suits_containers():
    env = " ".join(ops(RUNTIME, "ENV"))
    for setting in (
        "MODELOPS_HEALTH_HOST=0.0.0.0",  # probes come from outside the pod
        "MODELOPS_LOG_FORMAT=json",
        "PATH=/opt/modelops/bin:$PATH",
        "PYTHONUNBUFFERED=1",
    ):
        assert setting in env
    # No health port in the image: runners launched side by side must not fight over one.
    assert "MODELOPS_HEALTH_PORT" not in env


def test_the_build_context_filter_lets_in_the_packages_and_not_the_clutter():
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "**"
    for package in packages():
        assert f"!{package}/**" in lines
    for clutter in ("**/__pycache__", "**/*.egg-info"):
        assert clutter in lines
