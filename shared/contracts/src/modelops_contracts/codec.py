"""Encoding and decoding of bus messages: one encoder, one decoder per shape, built once.

Every decode failure, whatever its cause (bad JSON, wrong type, missing field, bad digest,
NaN parameter, malformed entrypoint), raises `InvalidMessage` with the dotted `field` at fault.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, TypeVar

import msgspec

from .domain import JOB_ID_PATTERN
from .entrypoint import ENTRYPOINT_PATTERN
from .errors import ContractError, InvalidMessage
from .messages import AnyCommand, AnyEvent, AnyMessage, Message
from .refs import BUNDLE_REF_PATTERN, DIGEST_PATTERN

__all__ = ["decode", "decode_command", "decode_event", "decode_message", "encode"]

T = TypeVar("T")
_encoder = msgspec.json.Encoder()
_decoders: dict[Any, msgspec.json.Decoder] = {}
_AT_RE = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_MISSING_RE = re.compile(r"missing required field `(?P<name>[^`]+)`")
_REGEX_RE = re.compile(r"Expected `str` matching regex '(?P<rx>.*)'$")
_PATTERN_NAMES = {
    ENTRYPOINT_PATTERN: "must be package.module:Class[/scenario], e.g. model:StochasticSIR",
    BUNDLE_REF_PATTERN: "must be host[:port]/repo@sha256:<64 hex>",
    DIGEST_PATTERN: "must be sha256:<64 lowercase hex>",
    JOB_ID_PATTERN: "must be a lowercase DNS label (a-z, 0-9, '-') of at most 40 chars",
}


def encode(value: Any) -> bytes:
    """JSON bytes of a message or any contract value."""
    return _encoder.encode(value)


def _decoder(type_: Any) -> msgspec.json.Decoder:
    dec = _decoders.get(type_)
    if dec is None:
        dec = _decoders[type_] = msgspec.json.Decoder(type_)
    return dec


def _field_of(text: str) -> tuple[str, str | None]:
    m = _AT_RE.search(text)
    reason, path = (text[: m.start()], m["path"]) if m else (text, "")
    path = re.sub(r"\[(\d+)\]", r".\1", path).lstrip(".")
    missing = _MISSING_RE.search(reason)
    if missing:
        path = f"{path}.{missing['name']}".lstrip(".")
        reason = "required field is missing"
    rx = _REGEX_RE.search(reason)
    if rx and (
        rx["rx"].encode().decode("unicode_escape") in _PATTERN_NAMES or rx["rx"] in _PATTERN_NAMES
    ):
        reason = (
            _PATTERN_NAMES.get(rx["rx"])
            or _PATTERN_NAMES[rx["rx"].encode().decode("unicode_escape")]
        )
    return reason, path or None


def _non_finite_path(value: Any, path: str = "") -> str | None:
    """Where a NaN/Infinity sits in JSON that only Python's lenient parser accepts."""
    if isinstance(value, float) and not math.isfinite(value):
        return path or "$"
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, item in items:
        found = _non_finite_path(item, f"{path}.{key}".lstrip("."))
        if found:
            return found
    return None


def _locate_non_finite(data: bytes | str) -> str | None:
    try:
        return _non_finite_path(json.loads(data))
    except (ValueError, RecursionError):  # not JSON even to Python's lenient parser
        return None


def _non_finite(field: str) -> InvalidMessage:
    return InvalidMessage(
        f"non-finite number (NaN or Infinity) at '{field}'",
        field=field,
        hint="parameters and config must be finite numbers",
    )


def decode(data: bytes | str, type_: type[T]) -> T:
    """Decode `data` as `type_`, or raise InvalidMessage naming the field at fault."""
    try:
        return _decoder(type_).decode(data)
    except msgspec.ValidationError as exc:
        reason, field = _field_of(str(exc))
        # `1e999` in a typed field: msgspec says "out of range" at `params[...]`, with no key.
        located = _locate_non_finite(data) if reason == "Number out of range" else None
        if located:
            raise _non_finite(located) from exc
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, ContractError) and getattr(cause, "field", None):
            inner = cause.field
            field = (
                f"{field}.{inner}" if field and not inner.startswith(field) else (field or inner)
            )
        where = f" at '{field}'" if field else ""
        raise InvalidMessage(
            f"invalid {getattr(type_, '__name__', 'message')}{where}: {reason}", field=field
        ) from exc
    except msgspec.DecodeError as exc:
        field = _locate_non_finite(data)
        if field:
            raise _non_finite(field) from exc
        raise InvalidMessage(f"not valid JSON: {exc}") from exc
    except RecursionError as exc:  # msgspec raises it for hostile nesting, e.g. 100k '['
        raise InvalidMessage("message nests too deeply to decode") from exc


def decode_message(data: bytes | str) -> Message:
    """Decode any command or event by its `type` tag."""
    return decode(data, AnyMessage)  # type: ignore[arg-type]


def decode_command(data: bytes | str) -> Message:
    return decode(data, AnyCommand)  # type: ignore[arg-type]


def decode_event(data: bytes | str) -> Message:
    return decode(data, AnyEvent)  # type: ignore[arg-type]
