"""Entrypoints: `package.module:Class` with an optional `/scenario`.

One grammar, one parser. The module path is dotted Python identifiers, the class one
identifier, and the scenario (if any) a name of letters, digits, `_`, `-` and `.`.
"""

from __future__ import annotations

import re

import msgspec

from .errors import InvalidEntrypoint

__all__ = ["ENTRYPOINT_PATTERN", "Entrypoint", "parse_entrypoint"]

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_SCENARIO = r"[A-Za-z0-9_][A-Za-z0-9_.\-]*"
# Python's `$` also matches before a final "\n"; `(?!\n)` makes it the true end of the text
# (schema.py drops it on export, where ECMA-262 `$` already means that).
ENTRYPOINT_PATTERN = rf"^{_IDENT}(\.{_IDENT})*:{_IDENT}(/{_SCENARIO})?$(?!\n)"
_RE = re.compile(
    rf"^(?P<module>{_IDENT}(?:\.{_IDENT})*):(?P<cls>{_IDENT})(?:/(?P<scenario>{_SCENARIO}))?\Z"
)


class Entrypoint(msgspec.Struct, frozen=True, kw_only=True):
    """A parsed entrypoint. `str(ep)` gives back the canonical string."""

    module: str
    cls: str
    scenario: str | None = None

    @property
    def target(self) -> str:
        """`module:Class` without the scenario: what the runner imports."""
        return f"{self.module}:{self.cls}"

    def with_scenario(self, scenario: str | None) -> Entrypoint:
        return parse_entrypoint(self.target + (f"/{scenario}" if scenario else ""))

    def __str__(self) -> str:
        return self.target + (f"/{self.scenario}" if self.scenario else "")


def parse_entrypoint(text: str) -> Entrypoint:
    """Parse `package.module:Class[/scenario]`, or raise InvalidEntrypoint saying what is wrong."""
    if not isinstance(text, str):
        raise InvalidEntrypoint(f"entrypoint must be a string, got {type(text).__name__}")
    m = _RE.match(text)
    if m:
        return Entrypoint(module=m["module"], cls=m["cls"], scenario=m["scenario"])
    if ":" not in text:
        problem = "has no ':Class' part"
    elif text.count(":") > 1:
        problem = "has more than one ':'"
    elif text.split(":", 1)[1].split("/", 1)[0] == "":
        problem = "names no class after ':'"
    else:
        problem = "is not of the form package.module:Class[/scenario]"
    raise InvalidEntrypoint(
        f"entrypoint {text!r} {problem}",
        field="entrypoint",
        hint=(
            "write it as package.module:Class or package.module:Class/scenario, "
            "e.g. model:StochasticSIR"
        ),
    )
