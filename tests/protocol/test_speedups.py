"""The C accelerator and its pure-Python twin, run through the same cases.

Every test taking the ``impl`` fixture runs once per implementation; the C one is
skipped when the extension is not built (failed under ``CI=true``: see
``tests/needs.py``). Expected values come from the small
reference encoder below, written independently of both implementations.
"""

from __future__ import annotations

import array
import gc
import importlib
import importlib.machinery
import logging
import os
import pathlib
import struct
import subprocess
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any, Protocol, Union, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portside.protocol import _pyspeedups
from portside.protocol.speedups import load_accelerator
from tests.needs import needs_speedups

Buffer = Union[bytes, bytearray, memoryview]
Message = Union[bytes, str]

MAX = 2**63 - 1
MASK = b"\x5a\xc3\x0f\x96"
LENGTHS = [0, 1, 2, 3, 4, 5, 125, 126, 127, 128, 1000, 65535, 65536, 65537]


class Speedups(Protocol):
    def apply_mask(self, data: Buffer, mask: Buffer, /) -> bytes: ...

    def encode_header(self, first_byte: int, length: int, mask: Buffer | None, /) -> bytes: ...

    def encode_frame(self, first_byte: int, payload: Buffer, mask: Buffer | None, /) -> bytes: ...

    def new_buffer(self, size: int, /) -> bytearray: ...

    def parse_frames(
        self, buf: Buffer, pos: int, end: int, masked: bool, max_size: int, out: list[Message], /
    ) -> int: ...


def load_c() -> ModuleType | None:
    try:
        return importlib.import_module("portside.protocol._speedups")
    except ImportError:
        return None


C_MODULE = load_c()
PY = cast(Speedups, _pyspeedups)
C = cast(Speedups, C_MODULE)
needs_c = needs_speedups(C_MODULE is not None)


@pytest.fixture(
    params=[
        pytest.param(PY, id="python"),
        pytest.param(C, id="c", marks=needs_c),
    ]
)
def impl(request: pytest.FixtureRequest) -> Speedups:
    return cast(Speedups, request.param)


# Reference encoder (RFC 6455 5.2, 5.3).


def ref_mask(data: bytes, mask: bytes) -> bytes:
    return bytes(b ^ mask[i & 3] for i, b in enumerate(data))


def ref_header(first: int, length: int, mask: bytes | None, width: int | None = None) -> bytes:
    """``width`` forces the length field: 0 (7 bits), 2 or 8 bytes."""
    bit = 0x80 if mask is not None else 0
    if width is None:
        width = 0 if length < 126 else 2 if length < 65536 else 8
    if width == 0:
        header = struct.pack("!BB", first, bit | length)
    elif width == 2:
        header = struct.pack("!BBH", first, bit | 126, length)
    else:
        header = struct.pack("!BBQ", first, bit | 127, length)
    return header if mask is None else header + mask


def ref_frame(first: int, payload: bytes, mask: bytes | None, width: int | None = None) -> bytes:
    header = ref_header(first, len(payload), mask, width)
    return header + (payload if mask is None else ref_mask(payload, mask))


def pattern(n: int, seed: int = 0) -> bytes:
    return bytes((i * 131 + seed * 17 + (i >> 8)) & 0xFF for i in range(n))


def mask_for(masked: bool) -> bytes | None:
    return MASK if masked else None


def parse(
    impl: Speedups,
    buf: Buffer,
    pos: int = 0,
    end: int | None = None,
    *,
    masked: bool,
    max_size: int = MAX,
) -> tuple[int, list[Message]]:
    out: list[Message] = []
    stop = impl.parse_frames(buf, pos, len(buf) if end is None else end, masked, max_size, out)
    return stop, out


# apply_mask.


def test_apply_mask_every_size_and_alignment(impl: Speedups) -> None:
    # Covers each SIMD block size, the word loop and the byte tail, from every
    # alignment of the source.
    base = pattern(300)
    view = memoryview(base)
    for offset in range(8):
        for n in range(300 - offset):
            data = view[offset : offset + n]
            assert impl.apply_mask(data, MASK) == ref_mask(bytes(data), MASK), (offset, n)


@pytest.mark.parametrize("n", [65535, 65536, 65537, 2**20 + 3])
def test_apply_mask_large(impl: Speedups, n: int) -> None:
    data = pattern(n, 1)
    masked = impl.apply_mask(data, MASK)
    assert masked == ref_mask(data, MASK)
    assert impl.apply_mask(masked, MASK) == data


@pytest.mark.parametrize(
    "mask", [b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x01\x02\x04\x08", b"\x80\x00\x00\x01"]
)
def test_apply_mask_keys(impl: Speedups, mask: bytes) -> None:
    data = pattern(77, 2)
    assert impl.apply_mask(data, mask) == ref_mask(data, mask)


def test_apply_mask_buffer_types(impl: Speedups) -> None:
    data = pattern(100, 3)
    expected = ref_mask(data, MASK)
    raw = bytearray(b"?" + data + b"?")
    payloads: list[Buffer] = [
        data,
        bytearray(data),
        memoryview(data),
        memoryview(raw)[1:-1],
        memoryview(raw).toreadonly()[1:-1],
    ]
    masks: list[Buffer] = [MASK, bytearray(MASK), memoryview(b"." + MASK)[1:]]
    for payload in payloads:
        for mask in masks:
            result = impl.apply_mask(payload, mask)
            assert type(result) is bytes
            assert result == expected
    assert bytes(raw[1:-1]) == data, "the input must not change"


@pytest.mark.parametrize("mask", [b"", b"abc", b"abcde", bytearray(8)])
def test_apply_mask_bad_mask_length(impl: Speedups, mask: bytes) -> None:
    with pytest.raises(ValueError, match="4 bytes"):
        impl.apply_mask(b"data", mask)
    with pytest.raises(ValueError, match="4 bytes"):
        impl.apply_mask(b"", mask)


def test_apply_mask_bad_types(impl: Speedups) -> None:
    with pytest.raises(TypeError):
        impl.apply_mask(123, MASK)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        impl.apply_mask("text", MASK)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        impl.apply_mask(b"data", None)  # type: ignore[arg-type]


# encode_header.


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 2**32, 2**63 - 1, 2**64 - 1])
@pytest.mark.parametrize("mask", [None, MASK], ids=["unmasked", "masked"])
@pytest.mark.parametrize("first", [0x81, 0x82, 0x00, 0x89, 0xFF])
def test_encode_header(impl: Speedups, first: int, length: int, mask: bytes | None) -> None:
    header = impl.encode_header(first, length, mask)
    assert type(header) is bytes
    assert header == ref_header(first, length, mask)


@pytest.mark.parametrize(
    ("first", "length", "error"),
    [
        (256, 5, ValueError),
        (-1, 5, ValueError),
        (2**70, 5, ValueError),
        (0x81, -1, ValueError),
        (0x81, -(2**70), ValueError),
        (0x81, 2**64, OverflowError),
        (1.5, 5, TypeError),
        (0x81, 5.0, TypeError),
        (0x81, "5", TypeError),
    ],
)
def test_encode_header_bad_input(
    impl: Speedups, first: object, length: object, error: type[Exception]
) -> None:
    for mask in (None, MASK):
        with pytest.raises(error):
            impl.encode_header(first, length, mask)  # type: ignore[arg-type]


@pytest.mark.parametrize("mask", [b"", b"abc", b"abcde"])
def test_encode_header_rejects_wrong_mask_length(impl: Speedups, mask: bytes) -> None:
    with pytest.raises(ValueError, match="4 bytes"):
        impl.encode_header(0x82, 5, mask)


def test_typed_memoryviews_count_bytes(impl: Speedups) -> None:
    words = memoryview(array.array("H", [1, 2, 3, 4]))
    raw = words.tobytes()
    assert impl.encode_frame(0x82, words, None) == ref_frame(0x82, raw, None)
    assert impl.encode_frame(0x82, words, MASK) == ref_frame(0x82, raw, MASK)
    assert impl.apply_mask(words, MASK) == ref_frame(0x82, raw, MASK)[6:]


# encode_frame.


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("mask", [None, MASK, b"\x01\x02\x04\x08"], ids=["none", "key1", "key2"])
def test_encode_frame(impl: Speedups, n: int, mask: bytes | None) -> None:
    payload = pattern(n, 4)
    raw = bytearray(b"???" + payload)
    expected = ref_frame(0x82, payload, mask)
    payloads: list[Buffer] = [payload, bytearray(payload), memoryview(payload), memoryview(raw)[3:]]
    for item in payloads:
        frame = impl.encode_frame(0x82, item, mask)
        assert type(frame) is bytes
        assert frame == expected
    assert bytes(raw[3:]) == payload, "the input must not change"


def test_encode_frame_first_byte(impl: Speedups) -> None:
    for first in (0x00, 0x01, 0x81, 0xC1, 0x88, 0xFF):
        assert impl.encode_frame(first, b"hi", None) == ref_frame(first, b"hi", None)
        assert impl.encode_frame(first, b"hi", MASK) == ref_frame(first, b"hi", MASK)


def test_encode_frame_bad_input(impl: Speedups) -> None:
    for payload in (b"", b"payload"):
        for mask in (b"", b"abc", b"abcde"):
            with pytest.raises(ValueError, match="4 bytes"):
                impl.encode_frame(0x82, payload, mask)
        with pytest.raises(ValueError, match="range"):
            impl.encode_frame(256, payload, None)
        with pytest.raises(TypeError):
            impl.encode_frame(0x82, payload, "abcd")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        impl.encode_frame(0x82, 123, None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        impl.encode_frame(0x82, None, MASK)  # type: ignore[arg-type]


# parse_frames.

MESSAGES: list[tuple[int, Message]] = [
    (0x81, "héllo wörld"),
    (0x82, pattern(200, 5)),  # 16-bit length
    (0x81, ""),
    (0x82, b"xyz"),  # sent below with a 64-bit length field
    (0x82, pattern(130, 6)),
    (0x81, "€" * 50),  # 16-bit length, multi-byte characters
]


def encode_messages(
    messages: list[tuple[int, Message]], masked: bool
) -> tuple[bytes, list[int], list[Message]]:
    """Return the frames, the offset after each one, and the messages."""
    data = b""
    bounds = [0]
    for i, (first, message) in enumerate(messages):
        payload = message.encode() if isinstance(message, str) else message
        # Non-minimal length encodings are legal to receive; exercise them.
        width = 8 if message == b"xyz" else None
        mask = bytes((i, 0x80 | i, 0xFF - i, 0x33)) if masked else None
        data += ref_frame(first, payload, mask, width)
        bounds.append(len(data))
    return data, bounds, [message for _, message in messages]


@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("first", [0x81, 0x82])
def test_parse_single_frame(impl: Speedups, masked: bool, n: int, first: int) -> None:
    payload = b"a" * n if first == 0x81 else pattern(n, 7)
    message: Message = payload.decode() if first == 0x81 else payload
    frame = ref_frame(first, payload, mask_for(masked))
    assert parse(impl, bytearray(frame), masked=masked) == (len(frame), [message])
    assert parse(impl, frame, masked=masked) == (len(frame), [message])
    assert parse(impl, memoryview(frame), masked=masked) == (len(frame), [message])


@pytest.mark.parametrize("masked", [True, False])
def test_parse_multiple_frames(impl: Speedups, masked: bool) -> None:
    data, bounds, messages = encode_messages(MESSAGES, masked)
    stop, out = parse(impl, bytearray(data), masked=masked)
    assert stop == len(data) == bounds[-1]
    assert out == messages
    assert [type(m) for m in out] == [str, bytes, str, bytes, bytes, str]


@pytest.mark.parametrize("masked", [True, False])
def test_parse_every_cut_point(impl: Speedups, masked: bool) -> None:
    data, bounds, messages = encode_messages(MESSAGES, masked)
    buf = bytearray(data)
    for cut in range(len(data) + 1):
        complete = max(i for i, bound in enumerate(bounds) if bound <= cut)
        expected = (bounds[complete], messages[:complete])
        assert parse(impl, buf, 0, cut, masked=masked) == expected, cut
        assert parse(impl, data[:cut], masked=masked) == expected, cut


@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize("n", [126, 65535, 65536])
def test_parse_cut_points_of_long_frames(impl: Speedups, masked: bool, n: int) -> None:
    head = ref_frame(0x81, b"ok", mask_for(masked))
    frame = ref_frame(0x82, pattern(n, 8), mask_for(masked))
    data = bytearray(head + frame)
    last = len(data)
    cuts = [*range(len(head) + 20), last // 2, last - 2, last - 1]
    for cut in cuts:
        expected = (len(head), ["ok"]) if cut >= len(head) else (0, [])
        assert parse(impl, data, 0, cut, masked=masked) == expected, cut
    assert parse(impl, data, 0, last, masked=masked) == (last, ["ok", pattern(n, 8)])


def bad_frames(masked: bool) -> list[tuple[str, bytes, int]]:
    """Frames the fast path must leave alone: ``(name, frame, max_size)``."""
    mask = mask_for(masked)
    frames = [
        ("text without FIN", ref_frame(0x01, b"abc", mask), MAX),
        ("binary without FIN", ref_frame(0x02, b"abc", mask), MAX),
        ("continuation", ref_frame(0x80, b"abc", mask), MAX),
        ("continuation without FIN", ref_frame(0x00, b"abc", mask), MAX),
        ("RSV1 text", ref_frame(0xC1, b"abc", mask), MAX),
        ("RSV1 binary", ref_frame(0xC2, b"abc", mask), MAX),
        ("RSV2", ref_frame(0xA2, b"abc", mask), MAX),
        ("RSV3", ref_frame(0x91, b"abc", mask), MAX),
        ("close", ref_frame(0x88, b"\x03\xe8", mask), MAX),
        ("ping", ref_frame(0x89, b"", mask), MAX),
        ("pong", ref_frame(0x8A, b"p", mask), MAX),
        ("reserved data opcode", ref_frame(0x83, b"abc", mask), MAX),
        ("reserved control opcode", ref_frame(0x8B, b"abc", mask), MAX),
        ("wrong mask bit", ref_frame(0x82, b"abc", None if masked else MASK), MAX),
        ("too big, 7-bit", ref_frame(0x82, b"abcd", mask), 3),
        ("too big, empty allowed", ref_frame(0x82, b"a", mask), 0),
        ("too big, 16-bit", ref_frame(0x82, bytes(126), mask), 125),
        ("too big, 64-bit", ref_frame(0x82, bytes(65536), mask), 65535),
        ("invalid UTF-8", ref_frame(0x81, b"ok\xff", mask), MAX),
        ("truncated UTF-8", ref_frame(0x81, b"ok\xc3", mask), MAX),
        ("UTF-8 surrogate", ref_frame(0x81, b"\xed\xa0\x80", mask), MAX),
        ("overlong UTF-8", ref_frame(0x81, b"\xc0\x80", mask), MAX),
        ("long invalid UTF-8", ref_frame(0x81, b"a" * 5000 + b"\xff", mask), MAX),
        ("huge invalid UTF-8", ref_frame(0x81, b"a" * 70000 + b"\x80", mask), MAX),
    ]
    # RFC 6455 5.2: the most significant bit of a 64-bit length MUST be 0.
    msb = struct.pack("!BBQ", 0x82, (0x80 if masked else 0) | 127, 2**63 + 3)
    frames.append(("64-bit length with MSB set", msb + (mask or b"") + b"abc", MAX))
    frames.append(("64-bit length with MSB set, no limit", msb + (mask or b"") + b"abc", 2**64))
    return frames


@pytest.mark.parametrize("masked", [True, False])
def test_parse_stops_at_non_simple_frames(impl: Speedups, masked: bool) -> None:
    mask = mask_for(masked)
    good = ref_frame(0x81, b"", mask) + ref_frame(0x82, b"", mask)
    after = ref_frame(0x82, b"", mask)
    for name, bad, max_size in bad_frames(masked):
        for data in (good + bad + after, good + bad, good + bad[:-1]):
            result = parse(impl, bytearray(data), masked=masked, max_size=max_size)
            assert result == (len(good), ["", b""]), name
        # Starting on the bad frame consumes nothing.
        result = parse(impl, bytearray(bad), masked=masked, max_size=max_size)
        assert result == (0, []), name


@pytest.mark.parametrize("masked", [True, False])
def test_parse_max_size(impl: Speedups, masked: bool) -> None:
    mask = mask_for(masked)
    for n in (0, 1, 125, 126, 65535, 65536):
        frame = ref_frame(0x82, bytes(n), mask)
        assert parse(impl, frame, masked=masked, max_size=n) == (len(frame), [bytes(n)])
        if n:
            assert parse(impl, frame, masked=masked, max_size=n - 1) == (0, [])
    frame = ref_frame(0x81, b"abc", mask)
    assert parse(impl, frame, masked=masked, max_size=2**100) == (len(frame), ["abc"])
    assert parse(impl, frame, masked=masked, max_size=-1) == (0, [])
    assert parse(impl, frame, masked=masked, max_size=-(2**100)) == (0, [])


@pytest.mark.parametrize("masked", [True, False])
def test_parse_window_inside_buffer(impl: Speedups, masked: bool) -> None:
    data, bounds, messages = encode_messages(MESSAGES, masked)
    # A complete frame before pos and one after end must both be ignored.
    outside = ref_frame(0x82, b"outside", mask_for(masked))
    buf = bytearray(outside + b"\x00" + data + outside)
    start = len(outside) + 1
    for i, bound in enumerate(bounds):
        result = parse(impl, buf, start, start + bound, masked=masked)
        assert result == (start + bound, messages[:i])
    # A window that cuts the following frame stops before it.
    result = parse(impl, buf, start, len(buf) - 1, masked=masked)
    assert result == (start + len(data), messages)
    # An empty window.
    assert parse(impl, buf, start, start, masked=masked) == (start, [])
    assert parse(impl, buf, len(buf), len(buf), masked=masked) == (len(buf), [])


@pytest.mark.parametrize("masked", [True, False])
def test_parse_large_text(impl: Speedups, masked: bool) -> None:
    # Above the sizes the C code handles on the stack and with the GIL held.
    for text in ("é" * 600, "a" * 70000, "ü" * 40000, "a" * (1 << 18), "ü" * (1 << 17)):
        frame = ref_frame(0x81, text.encode(), mask_for(masked))
        assert parse(impl, bytearray(frame), masked=masked) == (len(frame), [text])


def test_parse_appends_to_existing_list(impl: Speedups) -> None:
    frame = ref_frame(0x82, b"new", None)
    out: list[Message] = ["old"]
    assert impl.parse_frames(frame, 0, len(frame), False, MAX, out) == len(frame)
    assert out == ["old", b"new"]


def test_parse_out_not_a_list(impl: Speedups) -> None:
    frame = ref_frame(0x81, b"text", None) + ref_frame(0x82, b"data", None)

    class Recorder(list[Message]):
        def append(self, item: Message) -> None:
            super().append(item)
            super().append("recorded")

    out = Recorder()
    assert impl.parse_frames(frame, 0, len(frame), False, MAX, out) == len(frame)
    assert out == ["text", "recorded", b"data", "recorded"]

    class Refuser:
        def append(self, item: Message) -> None:
            raise KeyError(item)

    with pytest.raises(KeyError):
        impl.parse_frames(frame, 0, len(frame), False, MAX, Refuser())  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        impl.parse_frames(frame, 0, len(frame), False, MAX, None)  # type: ignore[arg-type]
    # Nothing to append, nothing to fail.
    assert impl.parse_frames(frame, 0, 1, False, MAX, None) == 0  # type: ignore[arg-type]


def test_parse_does_not_leak_references(impl: Speedups) -> None:
    data, _, _ = encode_messages(MESSAGES, True)
    _, out = parse(impl, bytearray(data), masked=True)
    # Each message is referenced by the list only, like this fresh object.
    control = [pattern(50) + b"!"]
    for i in range(len(out)):
        if len(out[i]) > 1:
            assert sys.getrefcount(out[i]) == sys.getrefcount(control[0]), out[i]


def test_buffers_released(impl: Speedups) -> None:
    """A bytearray can be resized after each call, including failed ones."""
    buf = bytearray(ref_frame(0x82, b"data", MASK) * 2)

    def check_resizable() -> None:
        buf.append(0)
        del buf[-1]

    impl.parse_frames(buf, 0, len(buf), True, MAX, [])
    check_resizable()
    with pytest.raises(AttributeError):
        impl.parse_frames(buf, 0, len(buf), True, MAX, None)  # type: ignore[arg-type]
    check_resizable()
    impl.apply_mask(buf, MASK)
    check_resizable()
    with pytest.raises(ValueError, match="4 bytes"):
        impl.apply_mask(buf, b"abc")
    check_resizable()
    impl.encode_frame(0x82, buf, MASK)
    check_resizable()
    with pytest.raises(ValueError, match="4 bytes"):
        impl.encode_frame(0x82, buf, b"abc")
    check_resizable()
    with pytest.raises(ValueError, match="range"):
        impl.encode_frame(300, buf, MASK)
    check_resizable()
    key = bytearray(MASK)
    impl.encode_header(0x82, 5, key)
    key.append(0)


@needs_c
@pytest.mark.parametrize(("pos", "end"), [(-1, 4), (0, 11), (5, 4), (11, 11), (0, -1)])
def test_c_parse_checks_bounds(pos: int, end: int) -> None:
    # The Python twin does not check these; the C code must, to stay in bounds.
    buf = bytearray(ref_frame(0x82, b"abcdefgh", None))
    assert len(buf) == 10
    with pytest.raises(ValueError, match="pos"):
        C.parse_frames(buf, pos, end, False, MAX, [])
    buf.append(0)  # the buffer was released


@needs_c
def test_c_parse_bad_argument_types() -> None:
    buf = ref_frame(0x82, b"abc", None)
    with pytest.raises(OverflowError):
        C.parse_frames(buf, 2**70, len(buf), False, MAX, [])
    with pytest.raises(TypeError):
        C.parse_frames(buf, 0.0, len(buf), False, MAX, [])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        C.parse_frames("text", 0, 0, False, MAX, [])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        C.parse_frames(buf, 0, len(buf), False, MAX)  # type: ignore[call-arg]


# Both implementations agree on random input.


@st.composite
def frames(draw: st.DrawFn, masked: bool) -> bytes:
    """One frame, usually simple, sometimes not; sometimes malformed."""
    first = draw(st.sampled_from([0x81, 0x82, 0x81, 0x82, 0x01, 0x80, 0x88, 0x89, 0xC1, 0x83]))
    kind = draw(st.sampled_from(["text", "text", "binary", "invalid", "long"]))
    if kind == "text":
        payload = draw(st.text(max_size=40)).encode("utf-8", "surrogatepass")
    elif kind == "binary":
        payload = draw(st.binary(max_size=40))
    elif kind == "invalid":
        text = draw(st.text(max_size=20)).encode()
        cut = draw(st.integers(0, len(text)))
        payload = text[:cut] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"]))
    else:
        size = draw(st.sampled_from([125, 126, 1100, 65535, 65536, 65537]))
        payload = (draw(st.sampled_from(["a", "é", "€"])) * size).encode()[:size]
    mask_matches = draw(st.integers(0, 9)) > 0
    with_mask = masked == mask_matches
    mask = draw(st.binary(min_size=4, max_size=4)) if with_mask else None
    width = draw(st.sampled_from([None, None, 2, 8])) if len(payload) < 65536 else None
    frame = ref_frame(first, payload, mask, width)
    if draw(st.integers(0, 30)) == 0:
        # RFC 6455 5.2: a 64-bit length with the most significant bit set.
        header = ref_header(first, 2**63 + len(payload), mask, 8)
        frame = header + frame[len(frame) - len(payload) :]
    return frame


@needs_c
@settings(max_examples=300, deadline=None, database=None)
@given(data=st.data(), masked=st.booleans())
def test_parse_frames_implementations_agree(data: st.DataObject, masked: bool) -> None:
    body = b"".join(data.draw(st.lists(frames(masked), max_size=6), label="frames"))
    prefix = data.draw(st.binary(max_size=6), label="prefix")
    suffix = data.draw(st.binary(max_size=6), label="suffix")
    buf = bytearray(prefix + body + suffix)
    pos = len(prefix)
    end = data.draw(st.integers(pos, len(buf)), label="end")
    max_size = data.draw(
        st.sampled_from([MAX, MAX, 0, 125, 126, 65535, 2**64, -1]) | st.integers(0, 200),
        label="max_size",
    )
    expected = parse(PY, buf, pos, end, masked=masked, max_size=max_size)
    assert parse(C, buf, pos, end, masked=masked, max_size=max_size) == expected
    assert pos <= expected[0] <= end


@needs_c
@settings(max_examples=200, deadline=None, database=None)
@given(
    payload=st.binary(max_size=600),
    offset=st.integers(0, 15),
    mask=st.binary(min_size=4, max_size=4),
    first=st.integers(0, 255),
)
def test_encoding_implementations_agree(
    payload: bytes, offset: int, mask: bytes, first: int
) -> None:
    view = memoryview(bytes(offset) + payload)[offset:]
    assert C.apply_mask(view, mask) == PY.apply_mask(view, mask) == ref_mask(payload, mask)
    for key in (None, mask):
        assert C.encode_frame(first, view, key) == PY.encode_frame(first, view, key)
        assert C.encode_header(first, len(payload), key) == PY.encode_header(
            first, len(payload), key
        )


# Choosing the implementation.


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", "python"),
        ("0", "python" if C_MODULE is None else "c"),
        ("", "python" if C_MODULE is None else "c"),
    ],
)
def test_no_speedups_environment_variable(value: str, expected: str) -> None:
    code = (
        "from portside.protocol import _pyspeedups, speedups\n"
        "same = speedups.parse_frames is _pyspeedups.parse_frames\n"
        "print(speedups.IMPLEMENTATION, same)\n"
    )
    env = dict(os.environ, PORTSIDE_NO_SPEEDUPS=value)
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == [expected, str(expected == "python")]


# load_accelerator: a missing extension says nothing, a broken one says why.


@pytest.fixture
def package(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[pathlib.Path]:
    """An importable package, ``fake_accel``, for extensions made up by the test."""
    directory = tmp_path / "fake_accel"
    directory.mkdir()
    (directory / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield directory
    for name in [name for name in sys.modules if name.startswith("fake_accel")]:
        del sys.modules[name]


def test_load_accelerator_not_built(
    package: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        assert load_accelerator("fake_accel._speedups") is None
    assert caplog.records == []


def test_load_accelerator_built_but_broken(
    package: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A shared object the dynamic loader rejects, as one built for another
    # Python or missing a symbol is.
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    (package / f"_speedups{suffix}").write_bytes(b"not a shared object")
    with caplog.at_level(logging.DEBUG):
        assert load_accelerator("fake_accel._speedups") is None
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.name == "portside.protocol.speedups"
    message = record.getMessage()
    assert "fake_accel._speedups was built but does not import (ImportError: " in message
    assert "pure-Python" in message


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("import fake_accel_dependency_missing\n", "ModuleNotFoundError"),
        ("raise SystemError('method indexes are out of date')\n", "SystemError"),
    ],
)
def test_load_accelerator_fails_while_loading(
    package: pathlib.Path, caplog: pytest.LogCaptureFixture, source: str, error: str
) -> None:
    # Found, but its initialization fails: a module it needs is missing (not
    # the extension itself), or its own check.
    (package / "_speedups.py").write_text(source)
    with caplog.at_level(logging.DEBUG):
        assert load_accelerator("fake_accel._speedups") is None
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert f"({error}: " in record.getMessage()


def test_load_accelerator_loads(package: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    (package / "_speedups.py").write_text("LOADED = True\n")
    with caplog.at_level(logging.DEBUG):
        module = load_accelerator("fake_accel._speedups")
    assert module is not None and module.LOADED
    assert caplog.records == []


def test_broken_accelerators_are_logged_once_at_import() -> None:
    # Both extensions built, neither loads: portside runs pure Python and says
    # so, once per extension, on stderr (logging's last resort).
    code = (
        "import importlib.abc, sys\n"
        "class Broken(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.endswith('._speedups'):\n"
        "            raise ImportError(f'{name}: undefined symbol: PyType_GetModuleByDef')\n"
        "sys.meta_path.insert(0, Broken())\n"
        "import portside\n"
        "from portside.asyncio import speedups as a\n"
        "from portside.protocol import speedups as p\n"
        "print(p.IMPLEMENTATION, a.IMPLEMENTATION)\n"
    )
    env = dict(os.environ, PORTSIDE_NO_SPEEDUPS="")
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["python", "python"]
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    names = ["portside.protocol._speedups", "portside.asyncio._speedups"]
    for line, name in zip(lines, names, strict=True):
        assert f"the C accelerator {name} was built but does not import (ImportError: " in line
        assert "undefined symbol: PyType_GetModuleByDef" in line


# new_buffer.


@pytest.mark.parametrize("size", [0, 1, 4096, 70_000])
def test_new_buffer(impl: Speedups, size: int) -> None:
    buffer = impl.new_buffer(size)
    assert type(buffer) is bytearray
    assert len(buffer) == size
    buffer[:] = bytes(size)  # writable, resizable later
    buffer.extend(b"x")
    assert len(buffer) == size + 1


def test_new_buffer_bad_size(impl: Speedups) -> None:
    with pytest.raises(ValueError, match="negative"):
        impl.new_buffer(-1)
    with pytest.raises(TypeError):
        impl.new_buffer("1")  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [2**62, 2**63 - 1], ids=["2^62", "2^63-1"])
def test_new_buffer_out_of_memory(
    impl: Speedups, size: int, capsys: pytest.CaptureFixture[str]
) -> None:
    # A failed PyByteArray_FromStringAndSize(NULL, n) frees a bytearray whose
    # export count was never set: it holds whatever the memory held before.
    # Freed just before, 64-byte blocks (the size class of a bytearray) whose
    # word at the offset of ob_exports is 1 make CPython print "deallocated
    # bytearray object has exported buffers" every time that path is taken.
    new_buffer = impl.new_buffer
    failures = 0
    for _ in range(20):
        poison = [bytes(16) + b"\x01" + bytes(7 + extra) for extra in range(8)]
        del poison
        try:  # not pytest.raises: it would allocate after the poison is freed
            new_buffer(size)
        except MemoryError:
            failures += 1
    assert failures == 20
    captured = capsys.readouterr()
    assert "exported buffers" not in captured.err
    assert captured.err == ""


# ReaderBase: the receive buffer and the fast path of FrameReader.

PY_READER: type[Any] = _pyspeedups.ReaderBase
C_READER: type[Any] | None = getattr(C_MODULE, "ReaderBase", None)
needs_c_reader = needs_speedups(C_READER is not None, "the C ReaderBase")

# Reads land in the first VIEW bytes of a buffer of VIEW + SPARE bytes, as
# connections with a smaller read_limit than the arena's do.
VIEW = 64
SPARE = 16

# The Python twin's slots; the C members must be the same.
READER_MEMBERS = (
    "_base",
    "_big",
    "_big_fill",
    "_buf",
    "_checked",
    "_masked",
    "_msg_opcode",
    "_reading",
    "_tail",
    "_view",
    "max_size",
)


@pytest.fixture(
    params=[
        pytest.param(PY_READER, id="python"),
        pytest.param(C_READER, id="c", marks=needs_c_reader),
    ]
)
def reader_base(request: pytest.FixtureRequest) -> type[Any]:
    return cast(type[Any], request.param)


_recorders: dict[type[Any], type[Any]] = {}


def recorder_class(base: type[Any]) -> type[Any]:
    """A subclass with ``__slots__``, like FrameReader, recording the slow paths."""
    if base not in _recorders:

        class Recorder(base):  # type: ignore[misc]
            __slots__ = ("calls", "fail", "returned")

            def _continue(self, pos: int, end: int, events: list[Any], /) -> list[Any]:
                self.calls.append(("continue", pos, end, list(events)))
                if self.fail is not None:
                    raise self.fail
                self.returned = [*events, "continued"]
                return self.returned

            def _continue_big(self, nbytes: int, events: list[Any], /) -> list[Any]:
                self.calls.append(("continue_big", nbytes, list(events)))
                if self.fail is not None:
                    raise self.fail
                self.returned = [*events, "continued big"]
                return self.returned

        _recorders[base] = Recorder
    return _recorders[base]


def new_reader(base: type[Any], *, masked: bool = False, max_size: int = MAX) -> Any:
    """A reader in the state FrameReader.__init__ leaves it."""
    reader = recorder_class(base)()
    reader._buf = buf = bytearray(VIEW + SPARE)
    reader._view = memoryview(buf)[:VIEW]
    reader.max_size = max_size
    reader._masked = masked
    reader._reading = True
    reader._base = 0
    reader._tail = b""
    reader._big = None
    reader._big_fill = 0
    reader._msg_opcode = 0
    reader._checked = 0
    reader.calls = []
    reader.fail = None
    reader.returned = None
    return reader


def feed(reader: Any, data: bytes) -> Any:
    buffer = reader.get_buffer()
    buffer[: len(data)] = data
    return reader.buffer_updated(len(data))


def test_reader_members_match_the_twin() -> None:
    assert tuple(sorted(PY_READER.__slots__)) == READER_MEMBERS
    if C_READER is not None:
        members = {
            name
            for name, value in vars(C_READER).items()
            if type(value).__name__ == "member_descriptor"
        }
        assert members == set(READER_MEMBERS)


@pytest.mark.parametrize("masked", [True, False])
def test_reader_fast_path(reader_base: type[Any], masked: bool) -> None:
    reader = new_reader(reader_base, masked=masked)
    view = reader._view
    # No tail, no big frame: the shared view itself, whatever the hint.
    assert reader.get_buffer() is view
    assert reader.get_buffer(4096) is view
    events = reader.buffer_updated(0)
    assert events == [] and type(events) is list
    assert reader.calls == []
    frame = ref_frame(0x82, b"abc", mask_for(masked))
    events = feed(reader, frame + frame)
    assert events == [b"abc", b"abc"]
    assert reader.calls == []
    assert reader._tail == b""
    assert reader._base == 0


@pytest.mark.parametrize("masked", [True, False])
def test_reader_hands_the_rest_to_continue(reader_base: type[Any], masked: bool) -> None:
    mask = mask_for(masked)
    head = ref_frame(0x81, b"ok", mask)
    rests = [
        ref_frame(0x82, b"cut", mask)[:-1],  # incomplete
        ref_frame(0x82, b"cut", mask)[:1],  # incomplete header
        ref_frame(0x89, b"ping", mask),  # control frame
        ref_frame(0x01, b"frag", mask),  # fragment
        ref_frame(0xC1, b"rsv1", mask),  # compressed
        ref_frame(0x81, b"\xff", mask),  # invalid UTF-8
        ref_frame(0x82, b"m", None if masked else MASK),  # wrong mask bit
    ]
    for rest in rests:
        reader = new_reader(reader_base, masked=masked)
        data = head + rest
        events = feed(reader, data)
        assert reader.calls == [("continue", len(head), len(data), ["ok"])]
        assert events is reader.returned
        assert reader._tail == b""


def test_reader_max_size(reader_base: type[Any]) -> None:
    small, big = ref_frame(0x82, b"abc", None), ref_frame(0x82, b"abcd", None)
    reader = new_reader(reader_base, max_size=3)
    feed(reader, small + big)
    assert reader.calls == [("continue", len(small), len(small + big), [b"abc"])]
    reader = new_reader(reader_base, max_size=0)
    empty = ref_frame(0x82, b"", None)
    feed(reader, empty + small)
    assert reader.calls == [("continue", len(empty), len(empty + small), [b""])]
    # FrameReader never sets a negative max_size; both twins then parse nothing.
    reader = new_reader(reader_base, max_size=-1)
    feed(reader, empty)
    assert reader.calls == [("continue", 0, len(empty), [])]


def test_reader_max_size_clamped_by_frame_reader() -> None:
    from portside.protocol import SERVER, Protocol

    assert Protocol(SERVER, max_size=2**64).max_size == MAX
    assert Protocol(SERVER, max_size=None).max_size == MAX
    assert Protocol(SERVER, max_size=MAX - 1).max_size == MAX - 1


def test_reader_tail_is_copied_before_the_read(reader_base: type[Any]) -> None:
    frame = ref_frame(0x82, b"abcdefgh", None)
    for tail in (frame[:5], bytearray(frame[:5]), memoryview(b"?" + frame[:5])[1:]):
        reader = new_reader(reader_base)
        reader._buf[:5] = b"?????"
        reader._tail = tail
        buffer = reader.get_buffer()
        assert reader._base == 5
        assert reader._buf[:5] == frame[:5]
        assert type(buffer) is memoryview
        assert len(buffer) == VIEW - 5
        buffer[:4] = frame[5:9]
        assert reader._buf[5:9] == frame[5:9]
        assert reader.buffer_updated(4) is reader.returned
        assert reader.calls == [("continue", 0, 9, [])]
        assert reader._tail == b""
        buffer = reader.get_buffer()
        assert buffer is reader._view
        assert reader._base == 0


def test_reader_tail_may_be_a_view_of_the_buffer(reader_base: type[Any]) -> None:
    reader = new_reader(reader_base)
    reader._buf[:10] = b"0123456789"
    reader._tail = memoryview(reader._buf)[3:8]  # overlaps where it is copied
    buffer = reader.get_buffer()
    assert reader._buf[:10] == b"3456756789"
    assert buffer[:5] == b"56789"


def test_reader_tail_completes_a_frame(reader_base: type[Any]) -> None:
    frame = ref_frame(0x81, "é".encode() * 20, MASK)
    reader = new_reader(reader_base, masked=True)
    reader._tail = frame[:30]
    buffer = reader.get_buffer()
    buffer[: len(frame) - 30] = frame[30:]
    assert reader.buffer_updated(len(frame) - 30) == ["é" * 20]
    assert reader.calls == []


def test_reader_tail_longer_than_the_buffer(reader_base: type[Any]) -> None:
    reader = new_reader(reader_base)
    reader._tail = bytes(VIEW + SPARE)  # fits _buf exactly, leaves no room
    assert len(reader.get_buffer()) == 0
    assert reader._base == VIEW + SPARE
    reader = new_reader(reader_base)
    reader._tail = bytes(VIEW + SPARE + 1)
    # The buffer is exported (_view), so it cannot grow.
    with pytest.raises(BufferError):
        reader.get_buffer()
    assert reader._base == 0
    assert len(reader._buf) == VIEW + SPARE


@pytest.mark.parametrize(
    ("field", "value"), [("_msg_opcode", 1), ("_msg_opcode", 2), ("_checked", 7)]
)
def test_reader_no_fast_path_inside_a_message(
    reader_base: type[Any], field: str, value: int
) -> None:
    reader = new_reader(reader_base)
    setattr(reader, field, value)
    data = ref_frame(0x82, b"whole", None)
    assert feed(reader, data) is reader.returned
    assert reader.calls == [("continue", 0, len(data), [])]
    reader._tail = data[:3]
    buffer = reader.get_buffer()
    buffer[:2] = data[3:5]
    reader.buffer_updated(2)
    assert reader.calls[-1] == ("continue", 0, 5, [])


def test_reader_big_frame(reader_base: type[Any]) -> None:
    reader = new_reader(reader_base)
    reader._big = big = bytearray(100)
    reader._big_fill = 10
    reader._tail = b"left alone"
    buffer = reader.get_buffer()
    assert type(buffer) is memoryview
    assert len(buffer) == 90
    buffer[:3] = b"xyz"
    assert big[10:13] == b"xyz"
    assert reader._base == 0
    assert reader.buffer_updated(3) is reader.returned
    assert reader.calls == [("continue_big", 3, [])]
    # _continue_big owns the read: nothing else changed.
    assert reader._tail == b"left alone"
    assert reader._big is big
    # nbytes is passed as is, unconverted.
    reader.buffer_updated("3")
    assert reader.calls[-1] == ("continue_big", "3", [])
    reader._big = b"read-only"
    reader._big_fill = 0
    buffer = reader.get_buffer()
    assert buffer == b"read-only"
    with pytest.raises(TypeError):
        buffer[:1] = b"x"


def test_reader_not_reading(reader_base: type[Any]) -> None:
    reader = new_reader(reader_base)
    reader._reading = False
    reader._tail = b"abc"
    reader._big = bytearray(10)
    events = reader.buffer_updated(5)
    assert events == [] and type(events) is list
    assert reader._tail == b""
    assert reader._big is None
    assert reader.calls == []
    # nbytes is not even looked at.
    assert reader.buffer_updated("five") == []
    assert reader.get_buffer() is reader._view


@pytest.mark.parametrize("nbytes", [VIEW + SPARE + 1, -1, -(2**62), 2**63, -(2**63) - 1, 2**100])
def test_reader_read_beyond_the_buffer(reader_base: type[Any], nbytes: int) -> None:
    reader = new_reader(reader_base)
    reader.get_buffer()
    reader._tail = b"abc"
    with pytest.raises(ValueError, match="len\\(buf\\)"):
        reader.buffer_updated(nbytes)
    assert reader._tail == b""  # reset before parsing, as in the twin
    assert reader.calls == []
    # Inside a message, the twin passes end to _continue unchecked: so does C.
    reader._msg_opcode = 1
    reader._base = 5
    reader.buffer_updated(nbytes)
    assert reader.calls == [("continue", 0, 5 + nbytes, [])]


def test_reader_read_of_the_whole_buffer(reader_base: type[Any]) -> None:
    reader = new_reader(reader_base)
    frame = ref_frame(0x82, bytes(VIEW + SPARE - 2), None)
    reader._buf[:] = frame
    assert reader.buffer_updated(VIEW + SPARE) == [bytes(VIEW + SPARE - 2)]
    assert reader.buffer_updated(True) is reader.returned  # an int: 1 byte, no frame
    assert reader.calls == [("continue", 0, 1, [])]


def test_reader_nbytes_type(reader_base: type[Any]) -> None:
    reader = new_reader(reader_base)
    reader._tail = b"kept"
    for nbytes in ("5", None, b"5"):
        with pytest.raises(TypeError):
            reader.buffer_updated(nbytes)
    assert reader._tail == b"kept"  # end = _base + nbytes failed first
    frame = ref_frame(0x82, b"abc", None)
    reader._buf[: len(frame)] = frame
    if reader_base is PY_READER:
        # The twin computes with any number; C wants an integer (and the event
        # loops pass one).
        assert reader.buffer_updated(float(len(frame))) == [b"abc"]
    else:
        with pytest.raises(TypeError):
            reader.buffer_updated(float(len(frame)))


def test_reader_call_signatures(reader_base: type[Any]) -> None:
    reader = new_reader(reader_base)
    with pytest.raises(TypeError):
        reader.get_buffer(1, 2)
    with pytest.raises(TypeError):
        reader.get_buffer(sizehint=1)
    with pytest.raises(TypeError):
        reader.buffer_updated()
    with pytest.raises(TypeError):
        reader.buffer_updated(1, 2)
    with pytest.raises(TypeError):
        reader.buffer_updated(nbytes=1)
    with pytest.raises(TypeError):
        reader_base(1)
    assert reader.calls == []


def test_reader_exceptions_propagate(reader_base: type[Any]) -> None:
    reader = new_reader(reader_base)
    reader.fail = KeyError("continue")
    with pytest.raises(KeyError, match="continue"):
        feed(reader, ref_frame(0x89, b"", None))
    reader._big = bytearray(10)
    with pytest.raises(KeyError, match="continue"):
        reader.buffer_updated(1)
    assert len(reader.calls) == 2


def test_reader_base_methods_raise_not_implemented(reader_base: type[Any]) -> None:
    class Bare(reader_base):  # type: ignore[misc]
        __slots__ = ()

    reader = Bare()
    for name in READER_MEMBERS:
        setattr(reader, name, getattr(new_reader(reader_base), name))
    reader._buf[:2] = b"\x89\x00"
    with pytest.raises(NotImplementedError):
        reader.buffer_updated(2)
    reader._big = bytearray(10)
    with pytest.raises(NotImplementedError):
        reader.buffer_updated(2)
    with pytest.raises(NotImplementedError):
        reader_base()._continue(0, 0, [])
    with pytest.raises(NotImplementedError):
        reader_base()._continue_big(0, [])


READER_VALUES: dict[str, list[object]] = {
    "_buf": [bytearray(3), b"ab", None],
    "_view": [memoryview(b"x"), None],
    "max_size": [0, 1, MAX],
    "_masked": [True, False],
    "_reading": [True, False],
    "_base": [0, 5, 2**62, -1],
    "_tail": [b"", b"abc", bytearray(b"x"), None],
    "_big": [None, bytearray(5)],
    "_big_fill": [0, 7, 2**62],
    "_msg_opcode": [0, 1, 2],
    "_checked": [0, 123, 2**62],
}


def test_reader_attributes_round_trip(reader_base: type[Any]) -> None:
    assert sorted(READER_VALUES) == sorted(READER_MEMBERS)
    for reader in (reader_base(), recorder_class(reader_base)()):
        for name, values in READER_VALUES.items():
            for value in values:
                setattr(reader, name, value)
                got = getattr(reader, name)
                assert type(got) is type(value), name
                assert got == value, name
                if not isinstance(value, (int, bool)):
                    assert got is value, name


@pytest.mark.parametrize("name", ["_buf", "_view", "_tail", "_big"])
def test_reader_unset_object_attributes(reader_base: type[Any], name: str) -> None:
    reader = recorder_class(reader_base)()
    with pytest.raises(AttributeError, match=name):
        getattr(reader, name)
    # Unset again after deleting, and the methods that read it raise too.
    reader = new_reader(reader_base)
    reader._tail = b"abc"  # so that get_buffer reads _buf
    delattr(reader, name)
    with pytest.raises(AttributeError, match=name):
        getattr(reader, name)
    with pytest.raises(AttributeError):
        delattr(reader, name)
    if name != "_big":
        with pytest.raises(AttributeError, match=name):
            reader.get_buffer()
    reader = new_reader(reader_base)
    delattr(reader, name)
    if name in ("_buf", "_big"):
        with pytest.raises(AttributeError, match=name):
            reader.buffer_updated(0)
    else:
        assert reader.buffer_updated(0) == []
    if name == "_big":
        with pytest.raises(AttributeError, match=name):
            reader.get_buffer()
    elif name == "_buf":
        assert reader.get_buffer() is reader._view  # _buf only matters with a tail


@needs_c_reader
def test_c_reader_members_are_typed() -> None:
    """Where the C members are stricter than the twin's slots.

    The twin stores any object in any slot; the C members for ``max_size``,
    ``_masked``, ``_reading``, ``_base``, ``_big_fill``, ``_msg_opcode`` and
    ``_checked`` store a C integer or bool, so they reject other types with
    TypeError (OverflowError past 64 bits), cannot be deleted, and read as 0
    or False before being set instead of raising AttributeError. portside only
    stores ints in range and bools there (FrameReader clamps max_size; see
    test_portside_assigns_bools_to_bool_members).
    """
    assert C_READER is not None
    c_reader, py_reader = recorder_class(C_READER)(), recorder_class(PY_READER)()
    assert (c_reader.max_size, c_reader._masked, c_reader._reading) == (0, False, False)
    assert (c_reader._base, c_reader._big_fill, c_reader._checked, c_reader._msg_opcode) == (
        0,
        0,
        0,
        0,
    )
    with pytest.raises(AttributeError):
        py_reader.max_size  # noqa: B018
    bad: list[tuple[str, object, type[Exception]]] = [
        ("_masked", 1, TypeError),
        ("_reading", 0, TypeError),
        ("_reading", None, TypeError),
        ("max_size", 2**63, OverflowError),
        ("max_size", None, TypeError),
        ("max_size", 1.0, TypeError),
        ("_base", "0", TypeError),
        ("_big_fill", None, TypeError),
        ("_checked", 2**64, OverflowError),
        ("_msg_opcode", None, TypeError),
    ]
    for name, value, error in bad:
        with pytest.raises(error):
            setattr(c_reader, name, value)
        setattr(py_reader, name, value)
        assert getattr(py_reader, name) is value
    for name in ("max_size", "_reading", "_checked"):
        with pytest.raises(TypeError):
            delattr(c_reader, name)
    # True is an int: accepted where the member is an int, read back as 1.
    c_reader.max_size = True
    assert c_reader.max_size == 1 and type(c_reader.max_size) is int


def test_portside_assigns_bools_to_bool_members() -> None:
    """The C twins store ``_masked``, ``_reading``, ``_handshaking`` as T_BOOL."""
    import ast
    import pathlib

    import portside

    bool_members = {"_masked", "_reading", "_handshaking"}
    seen: set[str] = set()
    for path in pathlib.Path(portside.__file__).parent.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            args = function.args
            bool_args = {
                arg.arg
                for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs]
                if isinstance(arg.annotation, ast.Name) and arg.annotation.id == "bool"
            }
            for node in ast.walk(function):
                if not isinstance(node, ast.Assign):
                    continue
                for target in node.targets:
                    if isinstance(target, ast.Attribute) and target.attr in bool_members:
                        seen.add(target.attr)
                        value = node.value
                        where = f"{path.name}:{node.lineno}"
                        if isinstance(value, ast.Constant):
                            assert type(value.value) is bool, where
                        else:
                            assert isinstance(value, ast.Name), where
                            assert value.id in bool_args, where
    assert seen == bool_members


def test_reader_subclass_garbage_collected(reader_base: type[Any]) -> None:
    collected = []

    class Finalized:
        def __del__(self) -> None:
            collected.append(True)

    for name in ("_buf", "_view", "_tail", "_big"):
        reader = recorder_class(reader_base)()
        holder = Finalized()
        holder.reader = reader  # type: ignore[attr-defined]
        setattr(reader, name, holder)
        del reader, holder
        gc.collect()
        assert collected, name
        collected.clear()


def test_reader_does_not_leak_references(reader_base: type[Any]) -> None:
    reader = new_reader(reader_base, masked=True)
    frame = ref_frame(0x82, b"payload", MASK)
    view, buf = reader._view, reader._buf
    refs = sys.getrefcount(view), sys.getrefcount(buf)
    control = [pattern(7) + b"!"]
    for _ in range(100):
        events = feed(reader, frame)
        assert sys.getrefcount(events) == 2
        assert sys.getrefcount(events[0]) == sys.getrefcount(control[0])
    reader._tail = frame[:3]
    feed(reader, frame[3:5])
    assert (sys.getrefcount(view), sys.getrefcount(buf)) == refs
    del view, reader._view
    buf.append(0)  # no buffer export left behind


# FrameReader on either base: the whole receive path agrees.


def frame_reader_class(base: type[Any]) -> type[Any]:
    """FrameReader's own code on ``base``, recording control frames as events."""
    from portside.protocol.reader import FrameReader

    namespace: dict[str, Any] = {
        name: value
        for name, value in vars(FrameReader).items()
        if name not in FrameReader.__slots__ and name not in ("__dict__", "__weakref__")
    }

    def _on_control(self: Any, opcode: int, payload: bytes, events: list[Any]) -> None:
        events.append(("control", opcode, payload))
        if opcode == 8:
            self._reading = False

    namespace["_on_control"] = _on_control
    return type(f"FrameReaderOn{base.__name__}", (base,), namespace)


def reader_state(reader: Any) -> dict[str, Any]:
    state = {}
    for name in (*READER_MEMBERS, "_big_total", "_pending_total", "_msg_size"):
        value = getattr(reader, name)
        if isinstance(value, (bytearray, memoryview)):
            value = (type(value).__name__, len(value))
        state[name] = value
    state["_msg_parts"] = list(reader._msg_parts)
    state["_decoder"] = reader._decoder is None
    return state


def comparable(events: list[Any]) -> list[Any]:
    return [(type(e), str(e)) if isinstance(e, Exception) else (type(e), e) for e in events]


@needs_c_reader
@settings(max_examples=300, deadline=None, database=None)
@given(data=st.data(), masked=st.booleans())
def test_frame_reader_on_both_bases_agree(data: st.DataObject, masked: bool) -> None:
    from portside.protocol.reader import Arena

    assert C_READER is not None
    body = b"".join(data.draw(st.lists(frames(masked), max_size=6), label="frames"))
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=8), label="cuts")
    max_size = data.draw(st.sampled_from([None, 0, 125, 1000, 70000]), label="max_size")
    results = []
    for base in (PY_READER, C_READER):
        reader = frame_reader_class(base)(
            masked=masked, max_size=max_size, read_limit=256, arena=Arena(256)
        )
        events: list[Any] = []
        start = 0
        for cut in [*sorted(cuts), len(body)]:
            events += reader.receive_data(body[start:cut])
            start = max(start, cut)
        results.append((comparable(events), reader_state(reader)))
    assert results[1] == results[0]


@needs_c_reader
def test_direct_buffer_updated_checks_its_reader() -> None:
    # The capsule's function, which the asyncio accelerator calls only on
    # readers of ReaderBase's buffer_updated, refuses anything else: called
    # here through ctypes, as a C caller would.
    import ctypes

    from portside.protocol.reader import Arena

    assert C_MODULE is not None
    assert C_READER is not None
    capsule = C_MODULE._buffer_updated
    name = b"portside.protocol._speedups._buffer_updated"
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype = ctypes.c_void_p
    get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    get_context = ctypes.pythonapi.PyCapsule_GetContext
    get_context.restype = ctypes.c_void_p
    get_context.argtypes = [ctypes.py_object]
    function = ctypes.PYFUNCTYPE(
        ctypes.py_object, ctypes.c_void_p, ctypes.py_object, ctypes.py_object
    )(get_pointer(capsule, name))
    state = get_context(capsule)
    with pytest.raises(TypeError, match="expected a ReaderBase, not str"):
        function(state, "not a reader", 0)
    reader = frame_reader_class(C_READER)(
        masked=False, max_size=None, read_limit=256, arena=Arena(256)
    )
    buffer = reader.get_buffer(-1)
    buffer[:7] = b"\x82\x05hello"
    assert function(state, reader, 7) == [b"hello"]
