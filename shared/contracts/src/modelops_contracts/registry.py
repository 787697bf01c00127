"""The model registry: the shape of `.modelops-bundle/registry.yaml` and of registry messages.

Paths are POSIX, relative to the project root, and may never escape it: the same check runs
when a registration is decoded, when a bundle is built and when a bundle is pulled.
"""

from __future__ import annotations

import collections
import functools
import re
from typing import Annotated, Literal

import msgspec

from .domain import ParameterSpace
from .entrypoint import parse_entrypoint
from .errors import InvalidMessage
from .hashing import model_digest
from .refs import DIGEST_PATTERN, Digest

__all__ = ["ModelEntry", "Registry", "TrackedFile", "check_relative_path"]

_MODEL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}\Z")
_DIGEST_RE = re.compile(DIGEST_PATTERN)
MAX_FILE_SIZE = 64 * 2**30  # 64 GiB: beyond this a "data file" is a mistake, not a model input


def check_relative_path(path: str, *, field: str = "path") -> str:
    """Return `path` if it is a safe project-relative POSIX path, else raise InvalidMessage."""
    problem = None
    if not isinstance(path, str) or not path:
        problem = "is empty"
    elif path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        problem = "is absolute"
    elif "\\" in path:
        problem = "contains a backslash"
    elif "\x00" in path:
        problem = "contains a NUL byte"
    elif any(part in ("..",) for part in path.split("/")):
        problem = "contains '..'"
    elif any(part in ("", ".") for part in path.split("/")):
        problem = "has an empty or '.' segment"
    if problem:
        raise InvalidMessage(
            f"path {path!r} {problem}",
            field=field,
            hint="tracked files must be relative paths inside the project folder",
        )
    return path


class TrackedFile(msgspec.Struct, frozen=True, kw_only=True):
    """A file tracked by content: project-relative path, sha256 digest, size in bytes."""

    path: str
    digest: Digest
    size: Annotated[int, msgspec.Meta(ge=0)]

    def __post_init__(self) -> None:
        check_relative_path(self.path)
        if not _DIGEST_RE.match(self.digest):
            raise ValueError(f"digest {self.digest!r} of {self.path!r} is not sha256:<64 hex>")
        if not 0 <= self.size <= MAX_FILE_SIZE:
            raise ValueError(f"size {self.size} of {self.path!r} is outside [0, 64 GiB]")


class ModelEntry(msgspec.Struct, frozen=True, kw_only=True, dict=True):
    """One registered model: entrypoint, its code and data files, declared outputs/scenarios."""

    id: str
    entrypoint: str
    path: str
    code: list[TrackedFile]
    data: list[TrackedFile] = []
    outputs: list[str] = []
    scenarios: list[str] = []
    parameters: list[str] = []
    parameter_space: ParameterSpace | None = None  # declared ranges, checked at submit

    def __post_init__(self) -> None:
        if not _MODEL_ID_RE.match(self.id):
            raise ValueError(f"model id {self.id!r} must be letters, digits, '_', '.', '-' (≤ 128)")
        parse_entrypoint(self.entrypoint)
        check_relative_path(self.path)
        counts = collections.Counter(f.path for f in self.files)
        dupes = sorted(p for p, n in counts.items() if n > 1)
        if dupes:
            raise ValueError(f"model {self.id!r} tracks {', '.join(dupes)} more than once")
        if self.path not in {f.path for f in self.code}:
            raise ValueError(
                f"model {self.id!r}: its file {self.path!r} must be among its code files"
            )

    @property
    def files(self) -> list[TrackedFile]:
        return [*self.code, *self.data]

    @functools.cached_property
    def digest(self) -> str:
        """Content digest of the model: entrypoint plus every tracked (path, digest)."""
        return model_digest(
            entrypoint=self.entrypoint,
            code=[(f.path, f.digest) for f in self.code],
            data=[(f.path, f.digest) for f in self.data],
        )


class Registry(msgspec.Struct, frozen=True, kw_only=True):
    """The registry of one project (`.modelops-bundle/registry.yaml`)."""

    version: Literal[1] = 1
    project: str = "default"
    models: dict[str, ModelEntry] = {}

    def __post_init__(self) -> None:
        for key, entry in self.models.items():
            if key != entry.id:
                raise ValueError(f"registry key {key!r} differs from the model's id {entry.id!r}")
        by_path: dict[str, str] = {}
        for entry in self.models.values():
            for f in entry.files:
                if by_path.setdefault(f.path, f.digest) != f.digest:
                    raise ValueError(f"{f.path!r} is tracked by two models with different digests")

    def files(self) -> dict[str, TrackedFile]:
        """Every tracked file of every model, by path (models may share files)."""
        out: dict[str, TrackedFile] = {}
        for entry in self.models.values():
            for f in entry.files:
                out[f.path] = f
        return dict(sorted(out.items()))

    def with_model(self, entry: ModelEntry) -> Registry:
        return Registry(
            version=self.version, project=self.project, models={**self.models, entry.id: entry}
        )
