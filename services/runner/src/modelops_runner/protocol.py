"""The pipe protocol between the worker pool and its worker subprocesses.

A frame is a 4-byte big-endian payload length followed by a msgpack map (bin type for
bytes, so outputs, raw columns or Parquet (see wire.py), travel without re-encoding). Frames
are bounded: a length over the limit means a broken or hostile peer, and is reported as
`FrameTooLarge` rather than allocated. Every message is a map with an `op` key:

    pool -> worker   init {import_paths, preload, memory_limit, max_frame_bytes}
                     task {id, entrypoint, params, seed, config, outputs}
                     exit {}
    worker -> pool   ready {pid} | import_error {entrypoint, error_type, message, traceback}
                     result {id, outputs: {name: raw | Parquet}, wall_s, cpu_s, peak_rss}
                     failure {id, kind, message, error_type, traceback, retire}

One task is one round trip: the pool never sends a second task before the reply.
This module is pure: `FrameDecoder` is fed bytes by whoever reads the pipe.
"""

from __future__ import annotations

from typing import Any, BinaryIO

import msgpack

__all__ = [
    "HEADER_BYTES",
    "MAX_FRAME_BYTES",
    "FrameDecoder",
    "FrameTooLarge",
    "ProtocolError",
    "encode_frame",
    "read_frame",
    "write_frame",
]

HEADER_BYTES = 4
MAX_FRAME_BYTES = 512 * 1024 * 1024
"""Default payload limit; a task's outputs travel in one frame, so it bounds them too."""

Message = dict[str, Any]


class ProtocolError(Exception):
    """The pipe carried something that is not a valid frame (the worker cannot be trusted)."""


class FrameTooLarge(ProtocolError):
    """A frame is over the size limit. Raised before allocating or sending it."""

    def __init__(self, size: int, limit: int, *, what: str = "frame") -> None:
        super().__init__(
            f"{what} of {size} bytes is over the {limit}-byte frame limit "
            "(hint: return fewer or smaller outputs, or raise max_frame_bytes)"
        )
        self.size = size
        self.limit = limit


def encode_frame(message: Message, *, max_bytes: int = MAX_FRAME_BYTES) -> bytes:
    """Header plus msgpack payload, or FrameTooLarge if the payload is over `max_bytes`."""
    payload = msgpack.packb(message, use_bin_type=True)
    if len(payload) > max_bytes:
        raise FrameTooLarge(len(payload), max_bytes, what=f"{message.get('op', '?')!s} message")
    return len(payload).to_bytes(HEADER_BYTES, "big") + payload


def _decode_payload(payload: bytes) -> Message:
    try:
        message = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ProtocolError(f"undecodable msgpack payload of {len(payload)} bytes: {exc}") from exc
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        raise ProtocolError(f"frame payload is not a message map with an 'op': {message!r:.200}")
    return message


class FrameDecoder:
    """Incremental decoder: feed it whatever the pipe gave, get back whole messages."""

    def __init__(self, *, max_bytes: int = MAX_FRAME_BYTES) -> None:
        self.max_bytes = max_bytes
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Message]:
        """Append `data`; return the messages it completed (raises ProtocolError on garbage)."""
        self._buf += data
        messages: list[Message] = []
        while len(self._buf) >= HEADER_BYTES:
            size = int.from_bytes(self._buf[:HEADER_BYTES], "big")
            if size > self.max_bytes:
                raise FrameTooLarge(size, self.max_bytes)
            end = HEADER_BYTES + size
            if len(self._buf) < end:
                break
            payload = bytes(self._buf[HEADER_BYTES:end])
            del self._buf[:end]
            messages.append(_decode_payload(payload))
        return messages


def read_frame(stream: BinaryIO, *, max_bytes: int = MAX_FRAME_BYTES) -> Message | None:
    """Blocking read of one message; None on a clean end of stream between frames."""
    header = stream.read(HEADER_BYTES)
    if not header:
        return None
    if len(header) < HEADER_BYTES:
        raise ProtocolError(f"stream ended inside a frame header ({len(header)} of 4 bytes)")
    size = int.from_bytes(header, "big")
    if size > max_bytes:
        raise FrameTooLarge(size, max_bytes)
    payload = stream.read(size)
    if len(payload) < size:
        raise ProtocolError(f"stream ended inside a frame ({len(payload)} of {size} bytes)")
    return _decode_payload(payload)


def write_frame(stream: BinaryIO, message: Message, *, max_bytes: int = MAX_FRAME_BYTES) -> None:
    """Blocking write of one message, flushed so the peer sees it now."""
    stream.write(encode_frame(message, max_bytes=max_bytes))
    stream.flush()
