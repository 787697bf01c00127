"""Label and field selectors, parsed and matched the way the API server does.

Both grammars are small; what matters is that a selector the real server rejects is
rejected here too (400 BadRequest), so a launcher cannot rely on a selector that only
works against the test double.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .status import bad_request

__all__ = [
    "FieldRequirement",
    "LabelRequirement",
    "matches_fields",
    "matches_labels",
    "parse_field_selector",
    "parse_label_selector",
]

_KEY = r"(?:[A-Za-z0-9.\-]+/)?[A-Za-z0-9](?:[A-Za-z0-9_.\-]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9](?:[A-Za-z0-9_.\-]*[A-Za-z0-9])?)?"
_SET_RE = re.compile(rf"^({_KEY})\s+(in|notin)\s+\(([^)]*)\)$")
_EQ_RE = re.compile(rf"^({_KEY})\s*(==|=|!=)\s*({_VALUE})$")
_EXISTS_RE = re.compile(rf"^(!?)\s*({_KEY})$")
_VALUE_RE = re.compile(rf"^{_VALUE}$")


@dataclass(frozen=True)
class LabelRequirement:
    """`op` is one of ``=``, ``!=``, ``in``, ``notin``, ``exists``, ``!``."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.op:
            case "=" | "in":
                return present and value in self.values
            case "!=" | "notin":
                return not present or value not in self.values
            case "exists":
                return present
            case _:
                return not present


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside a ``( … )`` value set."""
    parts, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts]


def parse_label_selector(text: str | None) -> list[LabelRequirement]:
    """Parse ``a=b,c!=d,e in (f,g),!h``; an empty selector selects everything."""
    if not text or not text.strip():
        return []
    requirements = []
    for part in _split_top_level(text):
        requirements.append(_parse_label_part(part, text))
    return requirements


def _parse_label_part(part: str, whole: str) -> LabelRequirement:
    if m := _SET_RE.match(part):
        values = tuple(v.strip() for v in m.group(3).split(","))
        if not all(_VALUE_RE.match(v) for v in values):
            raise bad_request(f'unable to parse requirement: invalid label value in "{whole}"')
        return LabelRequirement(m.group(1), m.group(2), values)
    if m := _EQ_RE.match(part):
        op = "=" if m.group(2) == "==" else m.group(2)
        return LabelRequirement(m.group(1), op, (m.group(3),))
    if m := _EXISTS_RE.match(part):
        return LabelRequirement(m.group(2), "!" if m.group(1) else "exists")
    raise bad_request(f'unable to parse requirement: found "{part}" in label selector "{whole}"')


def matches_labels(requirements: list[LabelRequirement], labels: Mapping[str, str] | None) -> bool:
    return all(r.matches(labels or {}) for r in requirements)


@dataclass(frozen=True)
class FieldRequirement:
    path: str
    negate: bool
    value: str


def parse_field_selector(
    text: str | None, supported: Mapping[str, Callable[[dict[str, Any]], str]]
) -> list[FieldRequirement]:
    """Parse ``metadata.name=x,status.phase!=Running`` against the fields a kind supports."""
    if not text or not text.strip():
        return []
    requirements = []
    for part in (p.strip() for p in text.split(",")):
        m = re.match(r"^([A-Za-z.]+)\s*(==|=|!=)\s*(.*)$", part)
        if not m:
            raise bad_request(f'invalid field selector: "{part}"')
        if m.group(1) not in supported:
            raise bad_request(f"field label not supported: {m.group(1)}")
        requirements.append(FieldRequirement(m.group(1), m.group(2) == "!=", m.group(3)))
    return requirements


def matches_fields(
    requirements: list[FieldRequirement],
    obj: dict[str, Any],
    supported: Mapping[str, Callable[[dict[str, Any]], str]],
) -> bool:
    return all((supported[r.path](obj) == r.value) != r.negate for r in requirements)
