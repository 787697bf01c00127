"""Frame encoding and the incremental decoder."""

from __future__ import annotations

import io

import msgpack
import pytest

from modelops_runner.protocol import (
    FrameDecoder,
    FrameTooLarge,
    ProtocolError,
    encode_frame,
    read_frame,
    write_frame,
)


def test_frame_is_big_endian_length_then_msgpack_with_bin_bytes() -> None:
    frame = encode_frame({"op": "result", "outputs": {"t": b"\x00\x01"}})
    size = int.from_bytes(frame[:4], "big")
    assert size == len(frame) - 4
    assert b"\xc4\x02\x00\x01" in frame  # bin 8, not str
    assert msgpack.unpackb(frame[4:]) == {"op": "result", "outputs": {"t": b"\x00\x01"}}


def test_decoder_reassembles_frames_fed_byte_by_byte() -> None:
    messages = [{"op": "task", "id": str(i), "params": {"beta": 0.1 * i}} for i in range(3)]
    stream = b"".join(encode_frame(m) for m in messages)
    decoder = FrameDecoder()
    got = []
    for i in range(len(stream)):
        got.extend(decoder.feed(stream[i : i + 1]))
    assert got == messages
    assert decoder.buffered == 0


def test_decoder_returns_several_frames_from_one_chunk_and_keeps_the_rest() -> None:
    a, b = encode_frame({"op": "a"}), encode_frame({"op": "b", "x": 1})
    decoder = FrameDecoder()
    assert decoder.feed(a + b[:3]) == [{"op": "a"}]
    assert decoder.buffered == 3
    assert decoder.feed(b[3:]) == [{"op": "b", "x": 1}]


def test_decoder_refuses_an_oversized_header_before_buffering_the_payload() -> None:
    decoder = FrameDecoder(max_bytes=1024)
    with pytest.raises(FrameTooLarge, match="2048 bytes is over the 1024-byte frame limit"):
        decoder.feed((2048).to_bytes(4, "big") + b"x")


def test_encoder_refuses_an_oversized_message_with_a_hint() -> None:
    with pytest.raises(
        FrameTooLarge, match=r"result message of \d+ bytes is over the 100-byte frame limit"
    ) as info:
        encode_frame({"op": "result", "outputs": {"t": b"x" * 200}}, max_bytes=100)
    assert "hint" in str(info.value)
    assert info.value.limit == 100


def test_decoder_rejects_garbage_and_non_messages() -> None:
    garbage = b"\xc1\xc1\xc1"  # 0xc1 is never valid msgpack
    with pytest.raises(ProtocolError, match="undecodable"):
        FrameDecoder().feed(len(garbage).to_bytes(4, "big") + garbage)
    payload = msgpack.packb([1, 2])
    with pytest.raises(ProtocolError, match="not a message map"):
        FrameDecoder().feed(len(payload).to_bytes(4, "big") + payload)


def test_blocking_read_and_write_round_trip_and_detect_truncation() -> None:
    buf = io.BytesIO()
    write_frame(buf, {"op": "ready", "pid": 7})
    write_frame(buf, {"op": "exit"})
    data = buf.getvalue()
    stream = io.BytesIO(data)
    assert read_frame(stream) == {"op": "ready", "pid": 7}
    assert read_frame(stream) == {"op": "exit"}
    assert read_frame(stream) is None  # clean end between frames
    truncated = io.BytesIO(data[:-1])
    assert read_frame(truncated) == {"op": "ready", "pid": 7}
    with pytest.raises(ProtocolError, match="inside a frame"):
        read_frame(truncated)
    with pytest.raises(ProtocolError, match="frame header"):
        read_frame(io.BytesIO(data[:2]))
    with pytest.raises(FrameTooLarge):
        read_frame(io.BytesIO(data), max_bytes=2)
