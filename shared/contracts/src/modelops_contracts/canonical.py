"""The one canonical encoding every id in ModelOps is hashed from.

Rules (pinned by golden vectors in tests/golden/):

- JSON, compact, UTF-8 (no ASCII escaping), object keys sorted by code point;
- keys must be strings; tuples are lists; msgspec Structs encode as their fields;
- floats in shortest round-trip form, `-0.0` becomes `0.0`, NaN and ±Inf are refused;
- `1`, `1.0` and `true` stay distinct (int, float and bool are different inputs);
- integers must fit in a signed 64-bit range.

An id is `sha256(domain_prefix + canonical_bytes)`, where the prefix names the kind of id and
its version (`modelops/param/v1\\x00`), so two kinds of id can never collide and a change of
rules is a new version, never a silent drift.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

import msgspec

from .errors import NotCanonical

__all__ = ["canonical_bytes", "domain_digest", "normalize"]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_encoder = msgspec.json.Encoder(order="sorted")


def _check_text(text: str, path: str) -> str:
    """Refuse text UTF-8 cannot encode (lone surrogates, e.g. from `os.fsdecode`)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise NotCanonical(
            f"text {text!r} at {path} is not valid Unicode (lone surrogate)", field=path
        ) from exc
    return text


def normalize(value: Any, _path: str = "$") -> Any:
    """Return `value` as plain JSON data ready for canonical encoding, or raise NotCanonical."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _check_text(value, _path)
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise NotCanonical(
                f"integer at {_path} is outside the signed 64-bit range", field=_path
            )
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise NotCanonical(
                f"{value!r} at {_path} cannot be hashed",
                field=_path,
                hint="parameters and config must be finite numbers",
            )
        return 0.0 if value == 0.0 else value
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotCanonical(f"key {key!r} at {_path} is not a string", field=_path)
            _check_text(key, _path)
            out[key] = normalize(item, f"{_path}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [normalize(item, f"{_path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, msgspec.Struct):
        return normalize(msgspec.to_builtins(value), _path)
    raise NotCanonical(
        f"{type(value).__name__} at {_path} has no canonical encoding",
        field=_path,
        hint="use str, int, float, bool, None, lists and string-keyed mappings",
    )


def canonical_bytes(value: Any) -> bytes:
    """Canonical JSON bytes of `value` (see module docstring for the rules)."""
    return _encoder.encode(normalize(value))


def domain_digest(domain: str, value: Any) -> str:
    """`sha256:<hex>` of the canonical bytes of `value` under a versioned domain prefix."""
    h = hashlib.sha256(domain.encode("ascii") + b"\x00")
    h.update(canonical_bytes(value))
    return "sha256:" + h.hexdigest()
