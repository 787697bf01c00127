"""Fixtures for the runner's unit tests: the test models folder on sys.path."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

FIXTURE_MODELS = Path(__file__).resolve().parents[2] / "fixtures" / "models"


@pytest.fixture
def models_path(monkeypatch: pytest.MonkeyPatch) -> Path:
    """tests/fixtures/models, importable for the length of one test."""
    monkeypatch.syspath_prepend(str(FIXTURE_MODELS))
    return FIXTURE_MODELS


@pytest.fixture
def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], Path]:
    """Write a throw-away model module under tmp_path and make it importable."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(name: str, source: str) -> Path:
        path = tmp_path / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        return path

    return write
