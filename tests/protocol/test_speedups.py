"""The C accelerator and its pure-Python twin, run through the same cases.

Every test taking the ``impl`` fixture runs once per implementation; the C one is
skipped when the extension is not built. Expected values come from the small
reference encoder below, written independently of both implementations.
"""

from __future__ import annotations

import array
import importlib
import os
import struct
import subprocess
import sys
from types import ModuleType
from typing import Protocol, Union, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portside.protocol import _pyspeedups

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
needs_c = pytest.mark.skipif(C_MODULE is None, reason="C accelerator not built")


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
    for text in ("é" * 600, "a" * 70000, "ü" * 40000):
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
