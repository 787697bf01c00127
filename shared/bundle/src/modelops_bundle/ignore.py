"""Which files a directory walk leaves out: built-in ignores plus the project's `.modelopsignore`.

`.modelopsignore` sits at the project root and uses gitignore syntax (patterns are relative to
the root; `dir/` matches folders; `!pattern` re-includes). As in git, a file inside an ignored
folder cannot be re-included, because the walk never enters that folder.
"""

from __future__ import annotations

from pathlib import Path

import structlog
from pathspec import GitIgnoreSpec

from .errors import ProjectError

__all__ = ["BUILTIN_IGNORES", "IGNORE_FILE", "IgnoreRules", "load_ignore_rules"]

log = structlog.get_logger(__name__)

IGNORE_FILE = ".modelopsignore"
BUILTIN_IGNORES: tuple[str, ...] = (
    "__pycache__/",
    "*.pyc",
    ".git/",
    ".modelops-bundle/",
    ".modelops/",
    ".venv/",
    ".DS_Store",
)
_BUILTIN = GitIgnoreSpec.from_lines(BUILTIN_IGNORES)


class IgnoreRules:
    """Compiled ignore rules: the built-ins plus the user's `.modelopsignore` patterns."""

    __slots__ = ("_spec", "lines")

    def __init__(self, lines: tuple[str, ...] = ()) -> None:
        self.lines = lines
        self._spec = GitIgnoreSpec.from_lines(lines)

    def is_ignored(self, rel: str, *, is_dir: bool = False) -> bool:
        """Whether project-relative POSIX path `rel` is ignored (folders are matched as `rel/`)."""
        key = f"{rel}/" if is_dir else rel
        return bool(_BUILTIN.match_file(key) or self._spec.match_file(key))

    def reason(self, rel: str, *, is_dir: bool = False) -> str | None:
        """The pattern that ignores `rel`, or None: for messages saying why a file was left out."""
        key = f"{rel}/" if is_dir else rel
        for spec, origin in ((_BUILTIN, "built-in"), (self._spec, IGNORE_FILE)):
            result = spec.check_file(key)
            if result.include and result.index is not None:
                return f"{spec.patterns[result.index].pattern!r} ({origin})"
        return None


def load_ignore_rules(root: Path) -> IgnoreRules:
    """Rules of the project at `root`: built-ins plus `.modelopsignore` if present."""
    path = root / IGNORE_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return IgnoreRules()
    except UnicodeDecodeError as exc:
        raise ProjectError(f"{path} is not UTF-8 text", hint="save it as UTF-8") from exc
    lines = tuple(text.splitlines())
    try:
        return IgnoreRules(lines)
    except ValueError as exc:  # pathspec raises GitWildMatchPatternError, a ValueError
        raise ProjectError(
            f"{path} has an invalid pattern: {exc}", hint="use gitignore syntax"
        ) from exc
